/*
 * replay: a main() for the libFuzzer harnesses of this directory, so that
 * they run with any C compiler (and under the sanitizers of SAN=1) as part
 * of the tests. Calls LLVMFuzzerTestOneInput on every file given or found in
 * the directories given, then on deterministic mutations of each (bit
 * flips, interesting bytes, truncations, insertions, deletions, copies and
 * splices from the other inputs) from a fixed-seed PRNG: the same corpus
 * gives the same inputs on every run and every machine.
 *
 *   replay [-n mutations] [-s seed] [-o crashfile] FILE|DIR...
 *
 * -n: mutations per input (default 200); -s: the PRNG seed; -o: where the
 * input being run is written when the process dies (a sanitizer report, a
 * signal): the file can be given back to replay, or to the libFuzzer
 * binary of "make fuzz", to reproduce.
 *
 * "make fuzz-replay" builds one replay_NAME per harness fuzz_NAME.c and
 * runs it on tests/fuzz/corpus/NAME/ (also under SAN=1, in check-build).
 * "make fuzz" builds the same harnesses as libFuzzer binaries with clang
 * for long runs by hand; that needs clang's runtime (Debian:
 * libclang-rt-14-dev), which "make check" does not install.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MUTATIONS_DEFAULT 200
#define SEED_DEFAULT 0x6d61696c2d66757aULL	/* "mail-fuz" */
#define INPUT_MAX (1024 * 1024)		/* larger files are skipped */
#define EDITS_MAX 4			/* edits per mutation */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Present when a sanitizer runtime is linked in: it calls back before it
 * ends the process after a report. */
extern void __sanitizer_set_death_callback(void (*callback)(void))
	__attribute__((weak));

struct input {
	char *name;
	uint8_t *data;
	size_t len;
};

/* What is being run, for the death callback and the signal handlers. */
static struct {
	const char *crash_file;
	const char *name;
	unsigned long mutation;	/* 0: the input as it is */
	const uint8_t *data;
	size_t len;
} current;

/* Tokens that mean something to the rcfile or qf grammar. */
static const char *const tokens[] = {
	"\n", "\r\n", "\\\n", ":0", ":0:", ":0 fw", ":0 c", "* ", "* !",
	"* $", "* ? ", "* < 10", "* > 10", "* 1^1 ", "* -2^0.5 ", "??",
	"{ ", " }", "$", "${", ":-", "`", "\"", "'", "\\/", "^^", "^TO_",
	"^FROM_DAEMON", "[^", "]", "(", ")|", "*", "+", "?", "|", "!",
	"VAR=", "INCLUDERC=", "# ", "\t", "%", "%0A", "%3A", "%00", ":",
	"V1\n", "T1764000000\n", "S\n", "RQ::a@b\n", "RS:2.0.0:", "H", ".\n",
	"Z0\n", "W1\n", "K0\n", "Y0\n", "N1\n", "I<x@y>\n", "M", "X",
};

static const uint8_t interesting[] = {
	0x00, 0x01, 0x7f, 0x80, 0xff, '\n', '\r', '\t', ' ', ':', '*',
	'{', '}', '\\', '$', '%', '"', '\'', '`', '!', '^', '.', '0', '9',
};

/* splitmix64: small, fast and the same everywhere. */
static uint64_t
next_random(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static size_t
below(uint64_t *state, size_t n)
{
	return n == 0 ? 0 : (size_t)(next_random(state) % n);
}

static void
write_all(int fd, const void *p, size_t len)
{
	const char *s = p;

	while (len > 0) {
		ssize_t n = write(fd, s, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		s += n;
		len -= (size_t)n;
	}
}

/* Says which input killed the process and saves it. Only async-signal-safe
 * calls: it also runs from a signal handler. */
static void
report_current(void)
{
	char num[32];
	size_t i = sizeof(num);
	unsigned long m = current.mutation;

	if (current.name == NULL)
		return;
	do {
		num[--i] = (char)('0' + m % 10);
		m /= 10;
	} while (m > 0 && i > 0);
	write_all(2, "replay: died on ", 16);
	write_all(2, current.name, strlen(current.name));
	write_all(2, " mutation ", 10);
	write_all(2, num + i, sizeof(num) - i);
	if (current.crash_file != NULL) {
		int fd = open(current.crash_file,
			  O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd >= 0) {
			write_all(fd, current.data, current.len);
			close(fd);
			write_all(2, ", input saved in ", 17);
			write_all(2, current.crash_file,
				  strlen(current.crash_file));
		}
	}
	write_all(2, "\n", 1);
}

static void
on_fatal_signal(int sig)
{
	report_current();
	signal(sig, SIG_DFL);
	raise(sig);
}

static int
read_input(const char *path, struct input *in)
{
	struct stat sb;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &sb) < 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (!S_ISREG(sb.st_mode) || sb.st_size > INPUT_MAX) {
		close(fd);
		return 0;
	}
	in->len = (size_t)sb.st_size;
	in->data = malloc(in->len > 0 ? in->len : 1);
	if (in->data == NULL) {
		close(fd);
		return -1;
	}
	while (got < in->len) {
		ssize_t n = read(fd, in->data + got, in->len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	in->len = got;
	in->name = strdup(path);
	return in->name != NULL ? 1 : -1;
}

static int
not_hidden(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

/* Appends the inputs of path (a file, or the files of a directory in name
 * order) to *inputs. */
static int
collect(const char *path, struct input **inputs, size_t *n)
{
	struct stat sb;
	struct dirent **names;
	int count, i, rc = 0;

	if (stat(path, &sb) < 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(sb.st_mode)) {
		struct input in;
		int got = read_input(path, &in);

		if (got < 0)
			return -1;
		if (got > 0) {
			*inputs = realloc(*inputs, (*n + 1) * sizeof(**inputs));
			if (*inputs == NULL)
				return -1;
			(*inputs)[(*n)++] = in;
		}
		return 0;
	}
	count = scandir(path, &names, not_hidden, alphasort);
	if (count < 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (i = 0; i < count; i++) {
		size_t len = strlen(path) + strlen(names[i]->d_name) + 2;
		char *file = malloc(len);

		if (file == NULL)
			return -1;
		snprintf(file, len, "%s/%s", path, names[i]->d_name);
		if (stat(file, &sb) == 0 && S_ISREG(sb.st_mode) &&
		    collect(file, inputs, n) < 0)
			rc = -1;
		free(file);
		free(names[i]);
	}
	free(names);
	return rc;
}

/* A growable byte string for building a mutation. */
struct bytes {
	uint8_t *p;
	size_t len, cap;
};

static void
bytes_reserve(struct bytes *b, size_t extra)
{
	if (b->len + extra <= b->cap)
		return;
	while (b->cap < b->len + extra)
		b->cap = b->cap > 0 ? b->cap * 2 : 256;
	b->p = realloc(b->p, b->cap);
	if (b->p == NULL) {
		perror("replay");
		exit(2);
	}
}

static void
bytes_insert(struct bytes *b, size_t at, const void *data, size_t len)
{
	bytes_reserve(b, len);
	memmove(b->p + at + len, b->p + at, b->len - at);
	memcpy(b->p + at, data, len);
	b->len += len;
}

static void
mutate_once(struct bytes *b, const struct input *inputs, size_t ninputs,
	    uint64_t *rnd)
{
	size_t at = below(rnd, b->len + 1), n;

	switch (below(rnd, 8)) {
	case 0:	/* flip a bit */
		if (b->len > 0)
			b->p[below(rnd, b->len)] ^=
				(uint8_t)(1u << below(rnd, 8));
		break;
	case 1:	/* an interesting byte in place of another */
		if (b->len > 0)
			b->p[below(rnd, b->len)] =
				interesting[below(rnd, sizeof(interesting))];
		break;
	case 2:	/* truncate */
		b->len = below(rnd, b->len + 1);
		break;
	case 3: {	/* insert a random or an interesting byte */
		uint8_t c = below(rnd, 2) ? (uint8_t)next_random(rnd) :
			interesting[below(rnd, sizeof(interesting))];

		bytes_insert(b, at, &c, 1);
		break;
	}
	case 4: {	/* insert a token of the grammars */
		const char *t = tokens[below(rnd, sizeof(tokens) /
					      sizeof(tokens[0]))];

		bytes_insert(b, at, t, strlen(t));
		break;
	}
	case 5:	/* delete a range */
		n = below(rnd, b->len - at + 1);
		if (n > 16)
			n = 1 + n % 16;
		if (at + n <= b->len) {
			memmove(b->p + at, b->p + at + n, b->len - at - n);
			b->len -= n;
		}
		break;
	case 6:	/* copy a range of itself elsewhere */
		if (b->len > 0) {
			size_t from = below(rnd, b->len);
			uint8_t chunk[64];

			n = 1 + below(rnd, sizeof(chunk));
			if (n > b->len - from)
				n = b->len - from;
			memcpy(chunk, b->p + from, n);
			bytes_insert(b, at, chunk, n);
		}
		break;
	default: {	/* splice in a piece of another input */
		const struct input *o = &inputs[below(rnd, ninputs)];

		if (o->len > 0) {
			size_t from = below(rnd, o->len);

			n = 1 + below(rnd, 256);
			if (n > o->len - from)
				n = o->len - from;
			bytes_insert(b, at, o->data + from, n);
		}
		break;
	}
	}
}

/* Runs the harness on a copy of exactly len bytes, so that a sanitizer sees
 * a read past the end, as libFuzzer arranges it. */
static void
run_one(const char *name, unsigned long mutation, const uint8_t *data,
	size_t len)
{
	uint8_t *copy = malloc(len > 0 ? len : 1);

	if (copy == NULL) {
		perror("replay");
		exit(2);
	}
	memcpy(copy, data, len);
	current.name = name;
	current.mutation = mutation;
	current.data = copy;
	current.len = len;
	LLVMFuzzerTestOneInput(copy, len);
	current.name = NULL;
	free(copy);
}

/* FNV-1a: each input's mutations depend on its bytes, not on its place in
 * the list. */
static uint64_t
hash(const uint8_t *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	size_t i;

	for (i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

int
main(int argc, char **argv)
{
	struct input *inputs = NULL;
	size_t ninputs = 0, i;
	unsigned long mutations = MUTATIONS_DEFAULT, k, runs = 0;
	uint64_t seed = SEED_DEFAULT;
	struct bytes b = { NULL, 0, 0 };
	int c, fatal[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT };

	while ((c = getopt(argc, argv, "n:s:o:")) != -1) {
		switch (c) {
		case 'n': mutations = strtoul(optarg, NULL, 10); break;
		case 's': seed = strtoull(optarg, NULL, 0); break;
		case 'o': current.crash_file = optarg; break;
		default: goto usage;
		}
	}
	if (optind >= argc)
		goto usage;
	for (; optind < argc; optind++)
		if (collect(argv[optind], &inputs, &ninputs) < 0)
			return 2;
	if (ninputs == 0) {
		fprintf(stderr, "replay: no inputs\n");
		return 2;
	}
	if (__sanitizer_set_death_callback != NULL)
		__sanitizer_set_death_callback(report_current);
	for (i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
		signal(fatal[i], on_fatal_signal);

	for (i = 0; i < ninputs; i++) {
		uint64_t rnd = seed ^ hash(inputs[i].data, inputs[i].len);

		run_one(inputs[i].name, 0, inputs[i].data, inputs[i].len);
		runs++;
		for (k = 1; k <= mutations; k++) {
			size_t edits = 1 + below(&rnd, EDITS_MAX), e;

			b.len = 0;
			bytes_reserve(&b, inputs[i].len + 1);
			memcpy(b.p, inputs[i].data, inputs[i].len);
			b.len = inputs[i].len;
			for (e = 0; e < edits; e++)
				mutate_once(&b, inputs, ninputs, &rnd);
			run_one(inputs[i].name, k, b.p, b.len);
			runs++;
		}
	}
	printf("replay: %zu inputs, %lu runs, no crash\n", ninputs, runs);
	for (i = 0; i < ninputs; i++) {
		free(inputs[i].name);
		free(inputs[i].data);
	}
	free(inputs);
	free(b.p);
	return 0;
usage:
	fprintf(stderr, "usage: replay [-n mutations] [-s seed] "
			"[-o crashfile] FILE|DIR...\n");
	return 2;
}
