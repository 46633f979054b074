/*
 * mailq: the queue listing of sendmail -bp, in sendmail's layout.
 */
#ifndef SMTPD_MAILQ_H
#define SMTPD_MAILQ_H

#include <stdio.h>

#include "config.h"

/* Prints the listing; returns 0, or -1 (and a message on stderr) when the
 * queue cannot be read. */
int mailq_print(const struct config *cfg, FILE *out);

#endif
