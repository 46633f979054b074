/*
 * message: reading and spooling the message to deliver.
 */
#include "message.h"

#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK 65536

static int
open_spool(const char *tmp_dir, struct status *st)
{
	int fd;
	struct buf path;

	fd = open(tmp_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	/* O_TMPFILE is not on every file system: fall back to a named file,
	 * unlinked at once. */
	buf_init(&path);
	buf_printf(&path, "%s/deliver.XXXXXX", tmp_dir);
	fd = mkostemp(path.data, O_CLOEXEC);
	if (fd >= 0)
		unlink(path.data);
	else
		status_errno(st, errno, "cannot spool message in %s", tmp_dir);
	buf_free(&path);
	return fd;
}

/* Where the header section ends in head: after the first empty line. When
 * there is none in head, all of head counts if it is the whole message, and
 * otherwise head up to its last complete line (a header too large to keep
 * in memory is cut there; what follows is treated as body). */
static size_t
find_header_end(const struct message *m)
{
	const char *p = m->head.data, *end = p + m->head.len;
	const char *last_line_end = p;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		if (nl == NULL)
			break;
		if (nl == p || (nl == p + 1 && p[0] == '\r'))
			return (size_t)(nl + 1 - m->head.data);
		p = nl + 1;
		last_line_end = p;
	}
	if ((off_t)m->head.len == m->size)
		return m->head.len;
	return (size_t)(last_line_end - m->head.data);
}

/* Takes a leading "From sender date" line off the message. */
static void
strip_envelope_line(struct message *m)
{
	const char *p = m->head.data, *nl, *s, *e;
	size_t skip;

	if (m->head.len < 5 || memcmp(p, "From ", 5) != 0)
		return;
	nl = memchr(p, '\n', m->head.len);
	if (nl == NULL)
		return;
	skip = (size_t)(nl + 1 - p);
	s = p + 5;
	while (s < nl && *s == ' ')
		s++;
	e = s;
	while (e < nl && *e != ' ' && *e != '\t' && *e != '\r')
		e++;
	if (e > s)
		m->envelope_sender = xstrndup(s, (size_t)(e - s));
	memmove(m->head.data, m->head.data + skip, m->head.len - skip);
	buf_truncate(&m->head, m->head.len - skip);
	m->fd_base += (off_t)skip;
	m->size -= (off_t)skip;
}

static int
read_regular(struct message *m, int in_fd, const struct stat *sb,
	     struct status *st)
{
	off_t base = lseek(in_fd, 0, SEEK_CUR);

	if (base < 0 || base > sb->st_size)
		base = 0;
	m->fd = fcntl(in_fd, F_DUPFD_CLOEXEC, 3);
	if (m->fd < 0)
		return status_errno(st, errno, "dup");
	m->fd_base = base;
	m->size = sb->st_size - base;
	/* Enough of the start for the header section. */
	for (;;) {
		ssize_t n;

		buf_reserve(&m->head, CHUNK);
		n = pread(m->fd, m->head.data + m->head.len, CHUNK,
			  m->fd_base + (off_t)m->head.len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return status_errno(st, errno, "read message");
		}
		m->head.len += (size_t)n;
		m->head.data[m->head.len] = '\0';
		if (n == 0 || (off_t)m->head.len >= m->size ||
		    m->head.len >= MESSAGE_MEMORY_MAX)
			break;
		if (memmem(m->head.data, m->head.len, "\n\n", 2) != NULL ||
		    memmem(m->head.data, m->head.len, "\n\r\n", 3) != NULL)
			break;
	}
	if ((off_t)m->head.len > m->size)	/* the file grew: ignore that */
		buf_truncate(&m->head, (size_t)m->size);
	return 0;
}

static int
read_stream(struct message *m, int in_fd, const char *tmp_dir,
	    struct status *st)
{
	char *chunk = NULL;
	ssize_t n;

	for (;;) {
		buf_reserve(&m->head, CHUNK);
		n = read(in_fd, m->head.data + m->head.len, CHUNK);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return status_errno(st, errno, "read message");
		}
		if (n == 0) {
			m->size = (off_t)m->head.len;
			return 0;
		}
		m->head.len += (size_t)n;
		m->head.data[m->head.len] = '\0';
		if (m->head.len > MESSAGE_MEMORY_MAX)
			break;
	}
	/* Too large for memory: everything goes to a spool file, and head
	 * keeps the first MESSAGE_MEMORY_MAX bytes. */
	m->fd = open_spool(tmp_dir, st);
	if (m->fd < 0)
		return -1;
	if (io_write_all(m->fd, m->head.data, m->head.len) < 0)
		goto write_error;
	m->size = (off_t)m->head.len;
	chunk = xmalloc(CHUNK);
	for (;;) {
		n = read(in_fd, chunk, CHUNK);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			free(chunk);
			return status_errno(st, errno, "read message");
		}
		if (n == 0)
			break;
		if (io_write_all(m->fd, chunk, (size_t)n) < 0)
			goto write_error;
		m->size += n;
	}
	free(chunk);
	buf_truncate(&m->head, MESSAGE_MEMORY_MAX);
	return 0;

write_error:
	free(chunk);
	return status_errno(st, errno, "cannot spool message in %s", tmp_dir);
}

int
message_read(struct message *m, int in_fd, const char *tmp_dir,
	     struct status *st)
{
	struct stat sb;
	int rc;

	memset(m, 0, sizeof(*m));
	buf_init(&m->head);
	m->fd = -1;
	m->arrival = time(NULL);
	if (fstat(in_fd, &sb) < 0)
		return status_errno(st, errno, "standard input");
	if (S_ISREG(sb.st_mode))
		rc = read_regular(m, in_fd, &sb, st);
	else
		rc = read_stream(m, in_fd, tmp_dir, st);
	if (rc < 0)
		return -1;
	strip_envelope_line(m);
	if (m->fd < 0 || (off_t)m->head.len == m->size) {
		/* All of it is in memory: the spool file is not needed. */
		if (m->fd >= 0)
			close(m->fd);
		m->fd = -1;
	}
	m->header_len = find_header_end(m);
	return 0;
}

void
message_free(struct message *m)
{
	buf_free(&m->head);
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
	free(m->envelope_sender);
	m->envelope_sender = NULL;
}

ssize_t
message_pread(const struct message *m, void *out, size_t len, off_t offset)
{
	ssize_t n;

	if (offset >= m->size)
		return 0;
	if ((off_t)len > m->size - offset)
		len = (size_t)(m->size - offset);
	if (m->fd < 0 || offset + (off_t)len <= (off_t)m->head.len) {
		memcpy(out, m->head.data + offset, len);
		return (ssize_t)len;
	}
	do
		n = pread(m->fd, out, len, m->fd_base + offset);
	while (n < 0 && errno == EINTR);
	return n;
}

int
message_header_next(const struct message *m, size_t *pos, const char **name,
		    size_t *name_len, const char **value, size_t *value_len)
{
	const char *base = m->head.data;
	const char *p = base + *pos, *end = base + m->header_len;
	const char *colon, *line_end;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		line_end = nl ? nl : end;
		/* The empty line ending the header section. */
		if (line_end == p || (line_end == p + 1 && p[0] == '\r'))
			return 0;
		colon = memchr(p, ':', (size_t)(line_end - p));
		/* A field ends where a line does not start with blank space. */
		while (nl != NULL && nl + 1 < end &&
		       (nl[1] == ' ' || nl[1] == '\t')) {
			nl = memchr(nl + 1, '\n', (size_t)(end - nl - 1));
			line_end = nl ? nl : end;
		}
		*pos = (size_t)((nl ? nl + 1 : end) - base);
		if (colon == NULL || colon == p || p[0] == ' ' ||
		    p[0] == '\t') {
			p = base + *pos;	/* not a field: skipped */
			continue;
		}
		*name = p;
		*name_len = (size_t)(colon - p);
		while (*name_len > 0 && (p[*name_len - 1] == ' ' ||
					 p[*name_len - 1] == '\t'))
			(*name_len)--;
		*value = colon + 1;
		*value_len = (size_t)(line_end - *value);
		if (*value_len > 0 && (*value)[*value_len - 1] == '\r')
			(*value_len)--;
		return 1;
	}
	return 0;
}

size_t
message_header_count(const struct message *m, const char *name)
{
	size_t pos = 0, count = 0, name_len = strlen(name);
	const char *n, *v;
	size_t nl, vl;

	while (message_header_next(m, &pos, &n, &nl, &v, &vl))
		if (nl == name_len && strncasecmp(n, name, nl) == 0)
			count++;
	return count;
}
