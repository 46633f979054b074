/*
 * config: loads mail.conf. Every key has a default, so a missing file or an
 * empty one yields a working configuration; an unknown key or a bad value is
 * an error naming file:line (programs exit 78, EX_CONFIG, on it). Relative
 * paths are taken relative to the directory of the file, so a whole
 * installation can live in one test directory.
 */
#ifndef LIB_CONFIG_H
#define LIB_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define CONFIG_DEFAULT_PATH SYSCONFDIR "/mail/mail.conf"

struct strlist {
	char **items;
	size_t count;
};

struct config {
	char *path;		/* the file read, or NULL */
	char *hostname;		/* empty until config_hostname() fills it */
	struct strlist local_domains;
	char *spool_dir;
	char *mailbox;
	char *queue_dir;
	struct strlist aliases;
	char *virtusertable;
	char *mailertable;
	char *access;
	char *log;
	char *statistics;
	struct strlist listen;
	int relay_based_on_mx;
	char *default_privs;
	uint64_t max_message_size;
	unsigned max_recipients;
	unsigned max_hops;
	unsigned queue_lifetime;	/* seconds; 0 = never */
	unsigned queue_warn;		/* seconds; 0 = no warning */
	unsigned command_timeout;
	unsigned data_timeout;
	unsigned max_sessions;
	unsigned max_sessions_per_client;
	char *smtp_cert;
	char *smtp_key;
	/* Beyond INTERFACE.md's list. */
	char *mail_group;		/* group of spool mboxes */
	unsigned lock_timeout;		/* seconds to wait for a mailbox lock */
	char *recipient_delimiter;	/* "+": user+tag */
	char *sendmail_path;		/* how deliver hands on remote mail */
	char *tmp_dir;			/* where deliver spools a large message */
	struct strlist allow_mail_to_commands;	/* alias, forward, include */
	struct strlist allow_mail_to_files;
	unsigned command_time_limit;	/* seconds a "|command" may run */
	char *deliver_path;		/* the local delivery agent */
	char *system_rcfile;		/* /etc/procmailrc */
	char *user_rcfile;		/* ~/.procmailrc */
	char *submit_group;		/* group of the queue directory */
	unsigned max_deliveries;	/* messages the runner works on at once */
	unsigned min_backoff;		/* first retry after a deferral */
	unsigned max_backoff;		/* longest wait between retries */
	char *smtpd_user;		/* who SMTP sessions run as */
	char *smtpd_path;		/* for sendmail -bs/-bd */
	unsigned max_line_length;	/* longest text line in DATA */
	char *smarthost;		/* all remote mail through this host */
	unsigned smtp_port;		/* where remote SMTP servers listen */
	int local_only;			/* no remote delivery at all */
	unsigned smtp_connect_timeout;
	char *smtp_bind_address;	/* our address for outgoing SMTP */
	int smtp_connection_reuse;	/* several messages per connection */
	unsigned smtpd_max_use;		/* connections per session process */
};

/* Loads path (NULL: the compiled-in default, which may be absent). When
 * must_exist is 0 a missing file gives the defaults. Returns 0, or -1 with
 * st->exit_code EX_CONFIG and "file:line: reason" in st->text. */
int config_load(struct config *cfg, const char *path, int must_exist,
		struct status *st);
void config_free(struct config *cfg);
/* The host name: the configured one, or the host's fully qualified name. */
const char *config_hostname(struct config *cfg);
/* 1 when domain (any case) is one of local_domains. */
int config_is_local_domain(struct config *cfg, const char *domain, size_t len);

/* Parsers shared with the tables and the command line. Each returns 0 or -1. */
int config_parse_duration(const char *text, unsigned *seconds);
int config_parse_size(const char *text, uint64_t *bytes);
int config_parse_bool(const char *text, int *value);
void strlist_add(struct strlist *list, const char *item);
void strlist_free(struct strlist *list);

#endif
