/*
 * test_authlimit.c - slowing token guessing per client address, with the
 * clock passed in: 500 failures in a row are slowed, other addresses are
 * not, IPv6 counts per /64, a success clears, quiet records are forgotten,
 * parallel failures queue, and the table stays bounded under 100,000
 * addresses without losing a busy attacker's record.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cmocka_main.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "authlimit.h"
#include "internal.h"

static struct sockaddr_storage addr(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, text, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(40000);
    } else {
        assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(40001);
    }
    return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

static tf__authlimit *table(size_t cap)
{
    tf__authlimit *a = NULL;
    tf__err e = {{0}};
    assert_int_equal(tf__authlimit_new(&a, cap, &e), TF_OK);
    return a;
}

static void test_authlimit_500_failures_slowed(void **state)
{
    (void)state;
    tf__authlimit *a = table(0);
    struct sockaddr_storage bad = addr("198.51.100.7"), good = addr("198.51.100.8");
    /* An attacker who waits for each answer before the next guess. */
    int64_t now = 1000000, start = now;
    for (int i = 1; i <= 500; i++) {
        int64_t d = tf__authlimit_fail(a, SA(bad), now);
        if (i <= TF__AUTHLIMIT_FREE)
            assert_int_equal(d, 0);
        else if (i == TF__AUTHLIMIT_FREE + 1)
            assert_int_equal(d, TF__AUTHLIMIT_BASE_MS);
        else if (i == TF__AUTHLIMIT_FREE + 2)
            assert_int_equal(d, 2 * TF__AUTHLIMIT_BASE_MS);
        else if (i >= 20)
            assert_int_equal(d, TF__AUTHLIMIT_MAX_MS);
        assert_true(d <= TF__AUTHLIMIT_MAX_MS);
        now += d;
    }
    /* 500 guesses took over 80 minutes instead of well under a second. */
    print_message("500 failures from one address took %lld s of waiting\n",
                  (long long)((now - start) / 1000));
    assert_true(now - start > 480LL * TF__AUTHLIMIT_MAX_MS);
    /* The next failure from it waits; another address's does not. */
    assert_int_equal(tf__authlimit_fail(a, SA(bad), now), TF__AUTHLIMIT_MAX_MS);
    assert_true(tf__authlimit_wait(a, SA(bad), now) > 0);
    assert_int_equal(tf__authlimit_wait(a, SA(good), now), 0);
    assert_int_equal(tf__authlimit_fail(a, SA(good), now), 0);
    /* A success clears the address's record. */
    tf__authlimit_success(a, SA(bad));
    assert_int_equal(tf__authlimit_wait(a, SA(bad), now), 0);
    assert_int_equal(tf__authlimit_fail(a, SA(bad), now), 0);
    tf__authlimit_free(a);
}

static void test_authlimit_parallel_failures_queue(void **state)
{
    (void)state;
    tf__authlimit *a = table(0);
    struct sockaddr_storage x = addr("203.0.113.1");
    int64_t now = 5000;
    /* 20 connections failing at the same instant: their answers are spread
       out as if they had come one after the other. */
    int64_t last = 0;
    for (int i = 1; i <= 20; i++) {
        int64_t d = tf__authlimit_fail(a, SA(x), now);
        assert_true(d >= last);
        last = d;
    }
    assert_true(last >= 100 + 200 + 400 + 800 + 1600 + 3200 + 6400);
    /* ...but never more than the queue's bound. */
    for (int i = 0; i < 100; i++)
        last = tf__authlimit_fail(a, SA(x), now);
    assert_int_equal(last, TF__AUTHLIMIT_QUEUE_MS);
    assert_int_equal(tf__authlimit_wait(a, SA(x), now), TF__AUTHLIMIT_QUEUE_MS);
    assert_int_equal(tf__authlimit_wait(a, SA(x), now + TF__AUTHLIMIT_QUEUE_MS), 0);
    tf__authlimit_free(a);
}

static void test_authlimit_address_keys(void **state)
{
    (void)state;
    tf__authlimit *a = table(0);
    int64_t now = 0;
    struct sockaddr_storage v6a = addr("2001:db8:1:2::10"), v6b = addr("2001:db8:1:2:ffff::1"),
                            v6other = addr("2001:db8:1:3::10"), v4 = addr("192.0.2.1"),
                            mapped = addr("::ffff:192.0.2.1"), v4other = addr("192.0.2.2");
    for (int i = 0; i < 10; i++)
        tf__authlimit_fail(a, SA(v6a), now);
    /* The same /64 shares the record; the next /64 does not. */
    assert_true(tf__authlimit_wait(a, SA(v6b), now) > 0);
    assert_int_equal(tf__authlimit_wait(a, SA(v6other), now), 0);
    for (int i = 0; i < 10; i++)
        tf__authlimit_fail(a, SA(v4), now);
    /* IPv4, also through a dual-stack socket, is one address. */
    assert_true(tf__authlimit_wait(a, SA(mapped), now) > 0);
    assert_int_equal(tf__authlimit_wait(a, SA(v4other), now), 0);
    assert_int_equal(tf__authlimit_size(a), 2);
    /* A record quiet for the forget time starts over. */
    int64_t later = now + TF__AUTHLIMIT_FORGET_MS + TF__AUTHLIMIT_QUEUE_MS + 1;
    assert_int_equal(tf__authlimit_wait(a, SA(v4), later), 0);
    assert_int_equal(tf__authlimit_fail(a, SA(v4), later), 0);
    /* NULL table or address: nothing is limited, nothing crashes. */
    assert_int_equal(tf__authlimit_fail(NULL, SA(v4), now), 0);
    assert_int_equal(tf__authlimit_wait(a, NULL, now), 0);
    tf__authlimit_success(NULL, SA(v4));
    tf__err e = {{0}};
    tf__authlimit *big = NULL;
    assert_int_equal(tf__authlimit_new(&big, (size_t)1 << 25, &e), TF_EINVAL);
    tf__authlimit_free(a);
}

static void test_authlimit_bounded_under_100000_addresses(void **state)
{
    (void)state;
    tf__authlimit *a = table(4096);
    size_t cap = tf__authlimit_capacity(a);
    assert_true(cap >= 4096 && cap < 4096 + 8);
    struct sockaddr_storage attacker = addr("198.51.100.99");
    int64_t now = 0;
    for (int i = 0; i < 50; i++)
        tf__authlimit_fail(a, SA(attacker), now);
    /* A flood of addresses, each failing once (IPv4 and IPv6 /64s). */
    for (uint32_t i = 0; i < 100000; i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof ss);
        if (i & 1) {
            struct sockaddr_in *in = (struct sockaddr_in *)&ss;
            in->sin_family = AF_INET;
            in->sin_addr.s_addr = htonl(0x0a000000u + i);
        } else {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
            in6->sin6_family = AF_INET6;
            in6->sin6_addr.s6_addr[0] = 0x20;
            in6->sin6_addr.s6_addr[1] = 0x01;
            memcpy(&in6->sin6_addr.s6_addr[4], &i, sizeof i);
        }
        tf__authlimit_fail(a, SA(ss), now + 1);
        assert_true(tf__authlimit_size(a) <= cap);
    }
    assert_int_equal(tf__authlimit_size(a), cap); /* full, not over */
    /* The attacker's record survived the flood: it is still slowed. */
    assert_true(tf__authlimit_wait(a, SA(attacker), now + 1) > 0);
    tf__authlimit_free(a);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_authlimit_500_failures_slowed),
        cmocka_unit_test(test_authlimit_parallel_failures_queue),
        cmocka_unit_test(test_authlimit_address_keys),
        cmocka_unit_test(test_authlimit_bounded_under_100000_addresses),
    };
    return TU_RUN_GROUP("authlimit", tests, NULL, NULL, argc > 1 ? argv[1] : NULL);
}
