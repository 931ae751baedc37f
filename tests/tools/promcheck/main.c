/* mongoq-promcheck: checks Prometheus text on stdin (promcheck.h); exit 0 valid, 1 not. */
#include <stdio.h>
#include <stdlib.h>

#include "promcheck.h"

int
main(void)
{
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap);
    size_t n;
    while (text && (n = fread(text + len, 1, cap - len - 1, stdin)) > 0) {
        len += n;
        if (len + 1 == cap && cap < (64u << 20)) {
            cap *= 2;
            char *bigger = realloc(text, cap);
            if (!bigger) {
                break;
            }
            text = bigger;
        }
    }
    if (!text) {
        return 1;
    }
    text[len] = '\0';
    char why[512];
    bool ok = promcheck(text, why, sizeof why);
    if (!ok) {
        fprintf(stderr, "promcheck: %s\n", why);
    }
    free(text);
    return ok ? 0 : 1;
}
