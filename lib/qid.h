/*
 * qid: queue ids in sendmail's style: six base-60 characters for the time of
 * creation (year, month, day, hour, minute, second), so that ids sort by age
 * and an administrator can read them, then eight random base-60 characters
 * from getrandom(2), so that ids are unique under concurrency and cannot be
 * guessed. Example: 6AOAmnRk3xTq0v.
 */
#ifndef LIB_QID_H
#define LIB_QID_H

#include <time.h>

#define QID_LEN 14
#define QID_SIZE (QID_LEN + 1)

void qid_new(char out[QID_SIZE], time_t now);
/* 1 when text is a well-formed queue id (used before it names a file). */
int qid_valid(const char *text);

#endif
