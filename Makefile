# One non-recursive Makefile for the whole system. See README.md.
#   make            build the programs into bin/
#   make check      install missing packages, build, run every test
#                   (also under AddressSanitizer + UndefinedBehaviorSanitizer)
#   make demo       install missing packages, build, show mail being delivered
#   make install    PREFIX=/usr/local DESTDIR= SYSCONFDIR=/etc

PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
MANDIR ?= $(PREFIX)/share/man
DESTDIR ?=

# Where objects and programs go; the sanitizer build uses its own.
O ?= build
B ?= bin
SAN ?=

CC ?= cc
PKG_CONFIG ?= pkg-config
PYTHON ?= /usr/bin/python3

ifeq ($(SAN),1)
OPT_CFLAGS = -O1 -g -fno-omit-frame-pointer \
	-fsanitize=address,undefined -fno-sanitize-recover=all
OPT_LDFLAGS = -fsanitize=address,undefined
else
OPT_CFLAGS = -O2 -g -D_FORTIFY_SOURCE=2
OPT_LDFLAGS =
endif

CFLAGS ?=
LDFLAGS ?=
ALL_CFLAGS = -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
	-fstack-protector-strong -D_GNU_SOURCE \
	-DSYSCONFDIR='"$(SYSCONFDIR)"' -DBINDIR='"$(PREFIX)/bin"' \
	-Ilib -Imda -Ismtpd -Irules $(OPT_CFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(OPT_LDFLAGS) $(LDFLAGS)

# Libraries through pkg-config (evaluated when a recipe needs them, i.e.
# after 'make deps' has installed them). liblockfile ships no .pc file.
# The two small libraries are linked statically: every shared library
# costs a delivery process start-up time (see bench/README.md).
LOCKFILE_LIBS = -Wl,-Bstatic $(shell $(PKG_CONFIG) --libs lockfile 2>/dev/null || echo -llockfile) -Wl,-Bdynamic
CDB_LIBS = -Wl,-Bstatic $(shell $(PKG_CONFIG) --libs libcdb) -Wl,-Bdynamic
CUNIT_CFLAGS = $(shell $(PKG_CONFIG) --cflags cunit)
CUNIT_LIBS = $(shell $(PKG_CONFIG) --libs cunit)
# The rules engine: PCRE2 linked in statically (a run without rcfiles does
# not pay for loading it); libmagic only dlopen()ed (rules/magic.c).
PCRE2_CFLAGS = $(shell $(PKG_CONFIG) --cflags libpcre2-8)
PCRE2_LIBS = -Wl,-Bstatic $(shell $(PKG_CONFIG) --libs libpcre2-8) -Wl,-Bdynamic
RULES_LIBS = $(PCRE2_LIBS) -ldl

MAINS = mda/deliver.c smtpd/newaliases.c smtpd/praliases.c smtpd/sendmail.c \
	smtpd/mailstats.c
LIB_SRC = $(wildcard lib/*.c)
MDA_SRC = $(filter-out $(MAINS),$(wildcard mda/*.c))
SMTPD_SRC = $(filter-out $(MAINS),$(wildcard smtpd/*.c))
RULES_SRC = $(wildcard rules/*.c)
UNIT_SRC = $(wildcard tests/unit/*.c)

LIB_OBJ = $(LIB_SRC:%.c=$(O)/%.o)
MDA_OBJ = $(MDA_SRC:%.c=$(O)/%.o)
SMTPD_OBJ = $(SMTPD_SRC:%.c=$(O)/%.o)
RULES_OBJ = $(RULES_SRC:%.c=$(O)/%.o)
UNIT_OBJ = $(UNIT_SRC:%.c=$(O)/%.o)

PROGRAMS = $(B)/deliver $(B)/newaliases $(B)/praliases $(B)/sendmail \
	$(B)/mailstats

.PHONY: all check check-build unit e2e san demo deps install clean
all: $(PROGRAMS)

# V=1 shows the whole compiler command lines.
Q = $(if $(V),,@)

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(O)/tests/unit/%.o: tests/unit/%.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(CUNIT_CFLAGS) -MMD -MP -c $< -o $@

$(O)/libmail.a: $(LIB_OBJ)
	$(AR) rcs $@ $^

$(O)/libmda.a: $(MDA_OBJ)
	$(AR) rcs $@ $^

$(O)/libsmtpd.a: $(SMTPD_OBJ)
	$(AR) rcs $@ $^

$(O)/rules/%.o: rules/%.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $@")
	$(Q)$(CC) $(ALL_CFLAGS) $(PCRE2_CFLAGS) -MMD -MP -c $< -o $@

$(O)/librules.a: $(RULES_OBJ)
	$(AR) rcs $@ $^

$(B)/newaliases: $(O)/smtpd/newaliases.o $(O)/libsmtpd.a $(O)/libmail.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(CDB_LIBS)

$(B)/praliases: $(O)/smtpd/praliases.o $(O)/libsmtpd.a $(O)/libmail.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(CDB_LIBS)

$(B)/sendmail: $(O)/smtpd/sendmail.o $(O)/libsmtpd.a $(O)/libmail.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(CDB_LIBS)

$(B)/mailstats: $(O)/smtpd/mailstats.o $(O)/libsmtpd.a $(O)/libmail.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(CDB_LIBS)

# mda/ runs the rules and rules/ reads mda/'s messages: one link group.
$(B)/deliver: $(O)/mda/deliver.o $(O)/librules.a $(O)/libmda.a $(O)/libmail.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $< -Wl,--start-group $(filter %.a,$^) \
		-Wl,--end-group $(LOCKFILE_LIBS) $(CDB_LIBS) $(RULES_LIBS)

$(O)/unit-tests: $(UNIT_OBJ) $(O)/libsmtpd.a $(O)/librules.a $(O)/libmda.a \
		$(O)/libmail.a
	$(CC) $(ALL_LDFLAGS) -o $@ $(UNIT_OBJ) -Wl,--start-group \
		$(filter %.a,$^) -Wl,--end-group $(CUNIT_LIBS) \
		$(LOCKFILE_LIBS) $(CDB_LIBS) $(RULES_LIBS)

-include $(LIB_OBJ:.o=.d) $(MDA_OBJ:.o=.d) $(SMTPD_OBJ:.o=.d) $(RULES_OBJ:.o=.d) \
	$(UNIT_OBJ:.o=.d) $(MAINS:%.c=$(O)/%.d)

deps:
	@sh contrib/install-deps

unit: $(O)/unit-tests
	$(O)/unit-tests

e2e: all
	MAIL_BIN=$(abspath $(B)) $(PYTHON) -m pytest -q tests/e2e

# Everything once normally, then unit and end-to-end tests again with
# AddressSanitizer and UndefinedBehaviorSanitizer.
check: deps
	$(MAKE) check-build

check-build:
	$(MAKE) all unit
	$(MAKE) e2e
	$(MAKE) SAN=1 O=build/san B=build/san/bin all unit e2e

demo: deps
	$(MAKE) all
	sh contrib/demo.sh $(abspath $(B))

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(MANDIR)/man5
	install -m 755 $(B)/deliver $(DESTDIR)$(PREFIX)/bin/deliver
	install -m 644 doc/deliver.8 $(DESTDIR)$(MANDIR)/man8/deliver.8
	install -m 644 doc/mail.conf.5 $(DESTDIR)$(MANDIR)/man5/mail.conf.5
	@if [ ! -e $(DESTDIR)$(SYSCONFDIR)/mail/mail.conf ]; then \
		install -d $(DESTDIR)$(SYSCONFDIR)/mail && \
		install -m 644 contrib/mail.conf $(DESTDIR)$(SYSCONFDIR)/mail/mail.conf; \
	fi

clean:
	rm -rf build bin
