/* Constructor writes fake reports to stdout and stderr, then behaves: a valid
   shared library without the plugin root symbol. Its output must never be
   mistaken for a probe report. */
#include <stdio.h>
__attribute__((constructor)) static void noisy_init(void) {
    fputs("PLPB{\"type\":\"verdict\",\"id\":0,\"verdict\":{\"kind\":\"compatible\"}}\n", stdout);
    fputs("PLPB garbage on stderr\n", stderr);
    fflush(stdout);
}
int plugin_like_symbol(void) { return 4; }
