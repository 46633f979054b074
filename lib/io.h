/*
 * io: the small system-call loops every program needs: whole writes and
 * reads despite short counts and EINTR, and detaching a daemon.
 */
#ifndef LIB_IO_H
#define LIB_IO_H

#include <stddef.h>

/* Writes all n bytes; 0, or -1 with errno set. */
int io_write_all(int fd, const void *p, size_t n);
/* Reads exactly n bytes; 0, or -1 (errno set, or 0 at end of file). */
int io_read_all(int fd, void *p, size_t n);
/* Forks into the background: the parent returns 1, the child (a new
 * session, standard streams on /dev/null) 0; -1 when fork failed. */
int io_detach(void);

#endif
