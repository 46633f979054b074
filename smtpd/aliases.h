/*
 * aliases: rebuilding aliases.db (newaliases, sendmail -bi) and printing
 * the aliases in force (praliases), shared by those front ends.
 */
#ifndef SMTPD_ALIASES_H
#define SMTPD_ALIASES_H

#include <stdio.h>

#include "config.h"

/* Rebuilds NAME.db for every file in cfg->aliases, reporting as sendmail
 * does ("FILE: N aliases, longest L bytes, T bytes total"). Returns an
 * exit code. */
int aliases_rebuild(struct config *cfg, FILE *out, FILE *err);
/* Prints "name:dest,dest" for every alias, or for the names given. */
int aliases_print(struct config *cfg, char **names, int count, FILE *out,
		  FILE *err);

#endif
