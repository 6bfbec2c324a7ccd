// An ordinary library: linked for what it defines.
#define STUB_CONCAT(a, b) a##b
#define STUB_FUNCTION(x) STUB_CONCAT(stub_function_, x)
int STUB_FUNCTION(STUB_NAME)() { return 1; }
