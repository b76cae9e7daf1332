/*
 * test.h - the unit-test harness: a list of test functions, each run in
 * order; a failed CHECK prints file:line and the expression and marks the
 * test failed; REQUIRE also returns. main() is TEST_MAIN(list).
 */
#ifndef MERIDIAN_TEST_H
#define MERIDIAN_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test__failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);             \
            test__failed = 1;                                                                      \
        }                                                                                          \
    } while (0)
#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond);           \
            test__failed = 1;                                                                      \
            return;                                                                                \
        }                                                                                          \
    } while (0)
#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_) {                                                                            \
            fprintf(stderr, "  %s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a,    \
                    #b, a_, b_);                                                                   \
            test__failed = 1;                                                                      \
        }                                                                                          \
    } while (0)
#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                   \
            fprintf(stderr, "  %s:%d: %s == %s failed: '%s' != '%s'\n", __FILE__, __LINE__, #a,    \
                    #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                   \
            test__failed = 1;                                                                      \
        }                                                                                          \
    } while (0)

typedef struct test_case {
    const char *name;
    void (*fn)(void);
} test_case;

#define TEST(fn)                                                                                   \
    {                                                                                              \
#fn, fn                                                                                    \
    }

static inline int
test_run_all(const test_case *cases, int argc, char **argv)
{
    int failed = 0, ran = 0;

    for (const test_case *t = cases; t->name; t++) {
        if (argc > 1 && strstr(t->name, argv[1]) == NULL)
            continue;
        test__failed = 0;
        fprintf(stderr, "[ RUN  ] %s\n", t->name);
        t->fn();
        fprintf(stderr, "[ %s ] %s\n", test__failed ? "FAIL" : " OK ", t->name);
        failed += test__failed;
        ran++;
    }
    fprintf(stderr, "%d/%d passed\n", ran - failed, ran);
    return failed ? 1 : 0;
}

#define TEST_MAIN(list)                                                                            \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        return test_run_all(list, argc, argv);                                                     \
    }

#endif
