/*
 * vars: the variables of a rules run (procmail's environment) and the
 * shell-like expansion procmail applies to rcfile text: quotes, backslashes,
 * $name ${name} ${name:-x} ${name:+x} ${name-x} ${name+x} $\name $1.. and
 * the special $# $$ $? $_ $- $= $@, and `command` substitution.
 */
#ifndef RULES_VARS_H
#define RULES_VARS_H

#include <stddef.h>

#include "buf.h"

struct vars {
	char **names;
	char **values;
	size_t n;
};

void vars_init(struct vars *v);
void vars_free(struct vars *v);
/* Replaces dst (initialised or not-yet-used) with a copy of src. */
void vars_copy(struct vars *dst, const struct vars *src);
/* NULL when unset. */
const char *vars_get(const struct vars *v, const char *name);
void vars_set(struct vars *v, const char *name, const char *value);
void vars_unset(struct vars *v, const char *name);
/* "NAME=value" strings with a NULL at the end, for commands; free with
 * vars_envp_free(). */
char **vars_envp_new(const struct vars *v);
void vars_envp_free(char **envp);
/* procmail's booleans: true is a non-zero number, "on", "y", "t", "e". */
int vars_is_true(const char *value, int unset_default);

enum vars_mode {
	VARS_ASSIGN,	/* one word: quotes removed, nothing split */
	VARS_WORDS,	/* folder and address lines: split into words */
	VARS_DQUOTE,	/* "$" conditions: as if inside double quotes */
	VARS_COMMAND	/* command lines: variables only, quotes kept */
};

struct vars_ctx {
	struct vars *vars;
	/* Value of a special variable ('#', '$', '?', '_', '-', '=', '@',
	 * or a digit for $1..$9); appended to out. */
	void (*special)(void *arg, char name, struct buf *out);
	/* Runs a `command` and appends its output to out. */
	void (*backquote)(void *arg, const char *command, struct buf *out);
	void *arg;
};

/* Expands text. VARS_WORDS: out gets the words, each ended by a NUL
 * byte, and *nwords their count (may be NULL for other modes). */
void vars_expand(const struct vars_ctx *ctx, const char *text,
		 enum vars_mode mode, struct buf *out, size_t *nwords);

#endif
