/* The entry point of build/test_all: libcriterion's own main (criterion_initialize, handle_args, run, finalize), plus
 * one thing for `make sanitize`: the runner process does not leak-check itself. Criterion 2.4.1's runner loses a
 * 48-byte block of its own bookkeeping when two long tests with timeouts run at the same time (calloc inside
 * libcriterion <- criterion_run_all_tests), which LeakSanitizer reports when the runner exits. The runner executes
 * no code of ours: BoxFort starts every test worker with exec, as a fresh process that never reaches this point, so
 * the workers' leak checks (where our code runs) are untouched. */
#include <criterion/criterion.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

int main(int argc, char *argv[]) {
    struct criterion_test_set *tests = criterion_initialize();
    int result = 0;
    if (criterion_handle_args(argc, argv, true)) {
#if defined(__SANITIZE_ADDRESS__)
        __lsan_disable(); /* this thread's allocations from here on: Criterion's, never reported */
#endif
        result = !criterion_run_all_tests(tests);
    }
    criterion_finalize(tests);
    return result;
}
