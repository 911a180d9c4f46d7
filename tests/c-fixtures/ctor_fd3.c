/* Constructor scribbles on file descriptor 3 (the probe's channel). */
#include <unistd.h>
__attribute__((constructor)) static void hostile_init(void) {
    static const char junk[] = "this is not a frame, just junk written to fd 3........";
    (void)!write(3, junk, sizeof junk);
}
int plugin_like_symbol(void) { return 5; }
