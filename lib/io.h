/*
 * io: the small system-call loops every program needs: whole writes and
 * reads despite short counts and EINTR, and detaching a daemon.
 */
#ifndef LIB_IO_H
#define LIB_IO_H

#include <stddef.h>
#include <sys/types.h>

/* Writes all n bytes; 0, or -1 with errno set. */
int io_write_all(int fd, const void *p, size_t n);
/* Reads exactly n bytes; 0, or -1 (errno set, or 0 at end of file). */
int io_read_all(int fd, void *p, size_t n);
/* Sends n bytes (one message) with the descriptor fd attached
 * (SCM_RIGHTS); flags as for sendmsg(2). 0 when all n went out. */
int io_send_fd(int sock, const void *p, size_t n, int fd, int flags);
/* Receives up to n bytes and an attached descriptor (close-on-exec) into
 * *fd, -1 when none came. Returns the bytes received, 0 at the end, or
 * -1 with errno set. */
ssize_t io_recv_fd(int sock, void *p, size_t n, int *fd);
/* Forks into the background: the parent returns 1, the child (a new
 * session, standard streams on /dev/null) 0; -1 when fork failed. */
int io_detach(void);

#endif
