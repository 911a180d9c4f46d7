/* Constructor never returns: the probe must time out and be killed. */
#include <unistd.h>
__attribute__((constructor)) static void hostile_init(void) { for (;;) pause(); }
int plugin_like_symbol(void) { return 3; }
