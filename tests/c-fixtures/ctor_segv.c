/* Constructor writes through a null pointer: a real SIGSEGV (a plain
   raise(SIGSEGV) would be swallowed by Rust's stack-overflow handler). */
__attribute__((constructor)) static void hostile_init(void) {
    *(volatile int *)0 = 1;
}
int plugin_like_symbol(void) { return 1; }
