/*
 * magic: libmagic through dlopen(). The handle and the loaded database are
 * kept for the life of the process (one deliver run).
 */
#include "magic.h"

#include <dlfcn.h>
#include <string.h>

/* From <magic.h>, which is not included: the library is optional. */
#define MAGIC_MIME_TYPE_FLAG 0x0000010
#define MAGIC_NO_CHECK_COMPRESS 0x0001000

typedef struct magic_set *magic_t;

static struct {
	int tried;
	magic_t cookie;
	const char *(*buffer)(magic_t, const void *, size_t);
} lib;

static int
load(void)
{
	void *h;
	magic_t (*open_fn)(int);
	int (*load_fn)(magic_t, const char *);
	void *sym;

	if (lib.tried)
		return lib.cookie != NULL ? 0 : -1;
	lib.tried = 1;
	h = dlopen("libmagic.so.1", RTLD_NOW | RTLD_LOCAL);
	if (h == NULL)
		return -1;
	/* POSIX: function pointers travel through void * this way. */
	sym = dlsym(h, "magic_open");
	memcpy(&open_fn, &sym, sizeof(open_fn));
	sym = dlsym(h, "magic_load");
	memcpy(&load_fn, &sym, sizeof(load_fn));
	sym = dlsym(h, "magic_buffer");
	memcpy(&lib.buffer, &sym, sizeof(lib.buffer));
	if (open_fn == NULL || load_fn == NULL || lib.buffer == NULL)
		return -1;
	lib.cookie = open_fn(MAGIC_MIME_TYPE_FLAG | MAGIC_NO_CHECK_COMPRESS);
	if (lib.cookie == NULL)
		return -1;
	if (load_fn(lib.cookie, NULL) != 0) {
		lib.cookie = NULL;
		return -1;
	}
	return 0;
}

int
magic_type_of(const void *data, size_t len, struct buf *out)
{
	const char *type;

	if (load() < 0)
		return -1;
	type = lib.buffer(lib.cookie, data, len);
	if (type == NULL || *type == '\0')
		return -1;
	buf_puts(out, type);
	return 0;
}
