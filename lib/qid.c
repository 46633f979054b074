/*
 * qid: queue id generation.
 */
#include "qid.h"

#include <string.h>
#include <sys/random.h>
#include <unistd.h>

static const char base60[] =
	"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwx";

void
qid_new(char out[QID_SIZE], time_t now)
{
	struct tm tm;
	unsigned char random_bytes[8];
	size_t got = 0;
	int i;

	gmtime_r(&now, &tm);
	out[0] = base60[tm.tm_year % 60];
	out[1] = base60[tm.tm_mon];
	out[2] = base60[tm.tm_mday];
	out[3] = base60[tm.tm_hour];
	out[4] = base60[tm.tm_min];
	out[5] = base60[tm.tm_sec % 60];
	while (got < sizeof(random_bytes)) {
		ssize_t n = getrandom(random_bytes + got,
				      sizeof(random_bytes) - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	if (got < sizeof(random_bytes)) {
		/* getrandom cannot fail on Linux >= 3.17 once seeded; keep
		 * ids unique anyway. */
		unsigned long mix = (unsigned long)getpid() * 2654435761UL ^
				    (unsigned long)now;
		for (i = 0; i < 8; i++, mix >>= 4)
			random_bytes[i] ^= (unsigned char)mix;
	}
	/* 256 % 60 != 0 leaves a slight bias; 60^8 ids hide it well. */
	for (i = 0; i < 8; i++)
		out[6 + i] = base60[random_bytes[i] % 60];
	out[QID_LEN] = '\0';
}

int
qid_valid(const char *text)
{
	size_t i;

	if (strlen(text) != QID_LEN)
		return 0;
	for (i = 0; i < QID_LEN; i++)
		if (strchr(base60, text[i]) == NULL || text[i] == '\0')
			return 0;
	return 1;
}
