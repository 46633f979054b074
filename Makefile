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
	-DSBINDIR='"$(PREFIX)/sbin"' \
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
SSL_LIBS = $(shell $(PKG_CONFIG) --libs openssl)

MAINS = mda/deliver.c smtpd/newaliases.c smtpd/praliases.c smtpd/sendmail.c \
	smtpd/mailstats.c smtpd/smtpd.c
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
	$(B)/mailq $(B)/mailstats $(B)/smtpd

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
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(CDB_LIBS) $(SSL_LIBS) -lresolv

$(B)/smtpd: $(O)/smtpd/smtpd.o $(O)/libsmtpd.a $(O)/libmail.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(CDB_LIBS) $(SSL_LIBS) -lresolv

# mailq is sendmail under another name (sendmail -bp).
$(B)/mailq: $(B)/sendmail
	ln -f $< $@

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
		$(LOCKFILE_LIBS) $(CDB_LIBS) $(RULES_LIBS) $(SSL_LIBS) -lresolv

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
	$(MAKE) fuzz-replay
	$(MAKE) SAN=1 O=build/san B=build/san/bin all unit e2e fuzz-replay

# Fuzz harnesses -------------------------------------------------------------
# tests/fuzz/fuzz_NAME.c are libFuzzer harnesses, one per parser, with a
# seed corpus each in tests/fuzz/corpus/NAME/.
#   make fuzz-replay  links each harness with tests/fuzz/replay.c as its
#       main(), with $(CC) and the normal flags (the sanitizers with SAN=1),
#       and runs it on every seed and FUZZ_MUTATIONS deterministic mutations
#       of each (fixed seed: the same inputs every run; about a second
#       under the sanitizers). A crash leaves its input in
#       $(O)/fuzz/crash-NAME. Part of check-build.
#   make fuzz  builds real libFuzzer binaries with clang into
#       $(O)/fuzz/libfuzzer/ for long manual runs (new inputs go to the
#       first directory), e.g.
#         mkdir -p /tmp/rc && build/fuzz/libfuzzer/fuzz_rcparse \
#             -max_total_time=600 /tmp/rc tests/fuzz/corpus/rcparse
#       It needs clang's runtime (Debian: libclang-rt-14-dev), which check
#       does not install.
FUZZ_NAMES = rcparse queue session
FUZZ_MUTATIONS ?= 2000
FUZZ_CC ?= clang
FUZZ_CFLAGS = -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -Ilib -Imda -Ismtpd -Irules
FUZZ_OBJ = $(O)/tests/fuzz/replay.o $(FUZZ_NAMES:%=$(O)/tests/fuzz/fuzz_%.o)

.PHONY: fuzz fuzz-replay
fuzz-replay: $(FUZZ_NAMES:%=$(O)/fuzz/replay_%)
	@for name in $(FUZZ_NAMES); do \
		echo "  REPLAY  tests/fuzz/corpus/$$name"; \
		$(O)/fuzz/replay_$$name -n $(FUZZ_MUTATIONS) \
			-o $(O)/fuzz/crash-$$name tests/fuzz/corpus/$$name || \
			exit 1; \
	done

# Each harness links the parser's own objects and lib/: a module elsewhere
# in rules/ or smtpd/ that does not build does not stop the replay.
$(O)/fuzz/replay_rcparse: $(O)/tests/fuzz/fuzz_rcparse.o \
		$(O)/tests/fuzz/replay.o $(O)/rules/rcparse.o \
		$(O)/rules/rxtrans.o $(O)/libmail.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PCRE2_LIBS)

$(O)/fuzz/replay_queue: $(O)/tests/fuzz/fuzz_queue.o \
		$(O)/tests/fuzz/replay.o $(O)/smtpd/queue.o $(O)/libmail.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^

$(O)/fuzz/replay_session: $(O)/tests/fuzz/fuzz_session.o \
		$(O)/tests/fuzz/replay.o $(O)/smtpd/session.o \
		$(O)/smtpd/submit.o $(O)/smtpd/queue.o $(O)/libmail.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^

# Each libFuzzer binary is compiled from the parser's sources and what they
# call, so that all of it is instrumented for coverage.
FUZZ_HEADERS = $(wildcard lib/*.h rules/*.h smtpd/*.h)

fuzz: $(FUZZ_NAMES:%=$(O)/fuzz/libfuzzer/fuzz_%)

$(O)/fuzz/libfuzzer/fuzz_rcparse: tests/fuzz/fuzz_rcparse.c rules/rcparse.c \
		rules/rxtrans.c lib/buf.c $(FUZZ_HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(PCRE2_CFLAGS) -o $@ $(filter %.c,$^) \
		$(PCRE2_LIBS)

$(O)/fuzz/libfuzzer/fuzz_queue: tests/fuzz/fuzz_queue.c smtpd/queue.c \
		lib/qid.c lib/status.c lib/buf.c lib/io.c $(FUZZ_HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(filter %.c,$^)

$(O)/fuzz/libfuzzer/fuzz_session: tests/fuzz/fuzz_session.c smtpd/session.c \
		smtpd/submit.c smtpd/queue.c lib/io.c lib/address.c lib/maillog.c lib/qid.c \
		lib/status.c lib/buf.c $(FUZZ_HEADERS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(filter %.c,$^)

-include $(FUZZ_OBJ:.o=.d)
# End of fuzz harnesses ------------------------------------------------------

demo: deps
	$(MAKE) all
	sh contrib/demo.sh $(abspath $(B))

# make install: the programs where a Debian administrator looks for them
# (sendmail in sbin, mailq and newaliases as links to it; deliver and smtpd
# in bin, where deliver_path and smtpd_path expect them), every man page,
# the submit group and the queue directory. sendmail is set-group-ID to
# SUBMIT_GROUP and the queue directory root:SUBMIT_GROUP 2770 (see
# sendmail(8)); owners, groups and the group itself are only set up when
# installing for real (DESTDIR empty) as root; a packager does that in the
# package's scripts. An existing mail.conf is never replaced; a new one gets
# queue_dir, sendmail_path and submit_group when they differ from the
# built-in defaults.
QUEUEDIR ?= /var/spool/mqueue
SUBMIT_GROUP ?= smmsp
INSTALL_AS_ROOT = [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/sbin \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(MANDIR)/man8
	install -m 755 $(B)/deliver $(DESTDIR)$(PREFIX)/bin/
	install -m 755 $(B)/sendmail $(B)/smtpd $(B)/praliases $(B)/mailstats \
		$(DESTDIR)$(PREFIX)/sbin/
	ln -sf ../sbin/sendmail $(DESTDIR)$(PREFIX)/bin/mailq
	ln -sf sendmail $(DESTDIR)$(PREFIX)/sbin/newaliases
	[ -d $(DESTDIR)$(QUEUEDIR) ] || install -d -m 700 $(DESTDIR)$(QUEUEDIR)
	@if $(INSTALL_AS_ROOT); then \
		set -ex; \
		getent group $(SUBMIT_GROUP) >/dev/null || \
			groupadd --system $(SUBMIT_GROUP); \
		chown root:$(SUBMIT_GROUP) $(PREFIX)/sbin/sendmail $(QUEUEDIR); \
		chmod 2755 $(PREFIX)/sbin/sendmail; \
		chmod 2770 $(QUEUEDIR); \
	fi
	install -m 644 $(wildcard doc/*.1) $(DESTDIR)$(MANDIR)/man1/
	install -m 644 $(wildcard doc/*.5) $(DESTDIR)$(MANDIR)/man5/
	install -m 644 $(wildcard doc/*.8) $(DESTDIR)$(MANDIR)/man8/
	@conf=$(DESTDIR)$(SYSCONFDIR)/mail/mail.conf; \
	if [ ! -e $$conf ]; then \
		set -e; \
		echo "install -m 644 contrib/mail.conf $$conf"; \
		install -d $(DESTDIR)$(SYSCONFDIR)/mail; \
		install -m 644 contrib/mail.conf $$conf; \
		extra=$$( \
		[ "$(QUEUEDIR)" = /var/spool/mqueue ] || \
			echo "queue_dir = $(QUEUEDIR)"; \
		[ "$(SUBMIT_GROUP)" = smmsp ] || \
			echo "submit_group = $(SUBMIT_GROUP)"); \
		if [ -n "$$extra" ]; then \
			printf '\n# Set by make install:\n%s\n' "$$extra" >> $$conf; \
		fi; \
	fi

clean:
	rm -rf build bin
