/*
 * rcparse: parses the text of a procmail rcfile into a tree of items
 * (assignments and recipes, recipes holding conditions, one action and,
 * for a "{ }" action, a nested list of items). Pure: works on (ptr, len),
 * expands nothing (variables are expanded when the engine runs), and never
 * gives up on a file: a syntax error is reported with file:line and the
 * parser resynchronises at the next line, as procmail does.
 */
#ifndef RULES_RCPARSE_H
#define RULES_RCPARSE_H

#include <stddef.h>

/* Recipe flags, one bit per letter of procmailrc(5). */
enum {
	RC_FLAG_H = 1 << 0,	/* egrep the header */
	RC_FLAG_B = 1 << 1,	/* egrep the body */
	RC_FLAG_D = 1 << 2,	/* case sensitive */
	RC_FLAG_A = 1 << 3,	/* also if the last unchained recipe matched */
	RC_FLAG_a = 1 << 4,	/* ... and the preceding one succeeded */
	RC_FLAG_E = 1 << 5,	/* else */
	RC_FLAG_e = 1 << 6,	/* if the preceding one failed */
	RC_FLAG_h = 1 << 7,	/* feed the header */
	RC_FLAG_b = 1 << 8,	/* feed the body */
	RC_FLAG_f = 1 << 9,	/* filter */
	RC_FLAG_c = 1 << 10,	/* carbon copy */
	RC_FLAG_w = 1 << 11,	/* wait, check the exit code */
	RC_FLAG_W = 1 << 12,	/* the same, quietly */
	RC_FLAG_i = 1 << 13,	/* ignore write errors */
	RC_FLAG_r = 1 << 14	/* raw mode */
};

/* One "* ..." line: an optional weight w^x and the raw text after it
 * (leading and trailing blanks gone, continuation lines joined). Its kind
 * (!, $, ?, <, >, VAR ??, regex) is decided by rc_cond_split() when the
 * engine runs, because "$" asks to decide it after expansion. */
struct rc_cond {
	int weighted;
	double weight, exponent;
	char *text;
	int line;
};

enum rc_action_type {
	RC_ACTION_FOLDER,	/* one or more folders */
	RC_ACTION_PIPE,		/* "| command", maybe captured into a variable */
	RC_ACTION_FORWARD,	/* "! address ..." */
	RC_ACTION_BLOCK		/* "{ items }" */
};

struct rc_item;

struct rc_recipe {
	unsigned flags;		/* RC_FLAG_* as written */
	int locked;		/* a second ':' was given */
	char *lockfile;		/* its name as written, or NULL (the default) */
	struct rc_cond *conds;
	size_t nconds;
	enum rc_action_type action;
	char *action_text;	/* folders, command or addresses, unexpanded */
	char *capture;		/* "VAR=| cmd": VAR, else NULL */
	struct rc_item *block;	/* RC_ACTION_BLOCK */
	size_t nblock;
};

enum rc_item_type { RC_ITEM_ASSIGN, RC_ITEM_RECIPE };

struct rc_item {
	enum rc_item_type type;
	int line;
	char *name;		/* assignment: the variable */
	char *value;		/* its value as written (quotes kept), NULL: unset */
	struct rc_recipe *recipe;
};

struct rc_file {
	char *name;
	struct rc_item *items;
	size_t nitems;
	size_t nerrors;
};

/* Called once per syntax error; text has no trailing newline. */
typedef void rc_error_fn(void *arg, const char *file, int line,
			 const char *text);

/* Parses len bytes of rcfile text (CRLF or LF line ends; a NUL byte reads
 * as a blank; nothing past len is read). Always returns a tree,
 * to be freed with rc_free(); errors go to error (may be NULL). */
struct rc_file *rc_parse(const char *name, const char *text, size_t len,
			 rc_error_fn *error, void *arg);
void rc_free(struct rc_file *rc);

/* What a condition's text asks for. */
enum rc_cond_kind {
	RC_COND_REGEX,		/* pattern against the recipe's search area */
	RC_COND_VAR,		/* "VAR ?? pattern" (also H, B, HB, BH) */
	RC_COND_PROGRAM,	/* "? command": its exit code */
	RC_COND_LESS,		/* "< bytes" */
	RC_COND_MORE,		/* "> bytes" */
	RC_COND_EXPAND		/* "$ rest": expand rest, then split again */
};

struct rc_cond_parts {
	enum rc_cond_kind kind;
	int negate;
	const char *var;	/* RC_COND_VAR: the name, var_len bytes */
	size_t var_len;
	const char *rest;	/* pattern, command, number or text to expand */
};

/* Splits a condition's text into its kind, "!" and the rest. */
void rc_cond_split(const char *text, struct rc_cond_parts *out);

#endif
