/* A perfectly good shared library that simply is not a plugin. */
int not_a_plugin(int x) { return x + 1; }
