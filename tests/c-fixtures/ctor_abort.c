/* Constructor calls abort(): the probe dies with SIGABRT. */
#include <stdlib.h>
__attribute__((constructor)) static void hostile_init(void) { abort(); }
int plugin_like_symbol(void) { return 2; }
