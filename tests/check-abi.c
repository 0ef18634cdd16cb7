/* SPDX-License-Identifier: MIT */
/* Pins the x86-64 layout of every ABI v1 struct, so that an accidental
 * reorder or a member inserted anywhere but the end fails the build's tests. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "abi/shardbound.h"

/* These numbers are what x86-64 compilers produce for the frozen v1 header;
 * a change means existing backends and hosts no longer agree. Other
 * targets have their own layout, which these numbers do not describe. */
#if defined(__x86_64__) && defined(__LP64__)
START_TEST(test_abi_host_layout_is_pinned) {
  ck_assert_uint_eq(sizeof(sb_host_v1), 32);
  ck_assert_uint_eq(offsetof(sb_host_v1, struct_size), 0);
  ck_assert_uint_eq(offsetof(sb_host_v1, abi_major), 4);
  ck_assert_uint_eq(offsetof(sb_host_v1, abi_minor), 8);
  ck_assert_uint_eq(offsetof(sb_host_v1, log), 16);
  ck_assert_uint_eq(offsetof(sb_host_v1, user_data), 24);
}
END_TEST

START_TEST(test_abi_option_layout_is_pinned) {
  ck_assert_uint_eq(sizeof(sb_option), 16);
  ck_assert_uint_eq(offsetof(sb_option, key), 0);
  ck_assert_uint_eq(offsetof(sb_option, value), 8);
}
END_TEST

START_TEST(test_abi_layer_desc_layout_is_pinned) {
  ck_assert_uint_eq(sizeof(sb_layer_desc_v1), 192);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, struct_size), 0);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, kind), 4);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, in_size), 8);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, out_size), 16);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, weight), 24);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, bias), 32);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, in_c), 40);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, in_h), 48);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, in_w), 56);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, out_c), 64);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, out_h), 72);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, out_w), 80);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, kernel_h), 88);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, kernel_w), 96);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, stride_h), 104);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, stride_w), 112);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, pad_top), 120);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, pad_left), 128);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, pad_bottom), 136);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, pad_right), 144);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, dilation_h), 152);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, dilation_w), 160);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, groups), 168);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, channels), 176);
  ck_assert_uint_eq(offsetof(sb_layer_desc_v1, spatial), 184);
}
END_TEST

START_TEST(test_abi_backward_args_layout_is_pinned) {
  ck_assert_uint_eq(sizeof(sb_backward_args_v1), 72);
  ck_assert_uint_eq(offsetof(sb_backward_args_v1, struct_size), 0);
  ck_assert_uint_eq(offsetof(sb_backward_args_v1, side), 4);
  ck_assert_uint_eq(offsetof(sb_backward_args_v1, A_out), 8);
  ck_assert_uint_eq(offsetof(sb_backward_args_v1, pre_lower), 16);
  ck_assert_uint_eq(offsetof(sb_backward_args_v1, pre_upper), 24);
  ck_assert_uint_eq(offsetof(sb_backward_args_v1, alpha), 32);
  ck_assert_uint_eq(offsetof(sb_backward_args_v1, A_in), 40);
  ck_assert_uint_eq(offsetof(sb_backward_args_v1, accumulate), 56);
  ck_assert_uint_eq(offsetof(sb_backward_args_v1, bias), 64);
}
END_TEST

START_TEST(test_abi_memory_stats_layout_is_pinned) {
  ck_assert_uint_eq(sizeof(sb_memory_stats_v1), 160);
  ck_assert_uint_eq(offsetof(sb_memory_stats_v1, struct_size), 0);
  ck_assert_uint_eq(offsetof(sb_memory_stats_v1, rank), 4);
  ck_assert_uint_eq(offsetof(sb_memory_stats_v1, current_bytes), 8);
  ck_assert_uint_eq(offsetof(sb_memory_stats_v1, peak_bytes), 64);
  ck_assert_uint_eq(offsetof(sb_memory_stats_v1, total_current_bytes), 120);
  ck_assert_uint_eq(offsetof(sb_memory_stats_v1, total_peak_bytes), 128);
  ck_assert_uint_eq(offsetof(sb_memory_stats_v1, baseline_bytes), 136);
  ck_assert_uint_eq(offsetof(sb_memory_stats_v1, device_used_bytes), 144);
  /* @since 1.2 */
  ck_assert_uint_eq(offsetof(sb_memory_stats_v1, peak_rss_bytes), 152);
}
END_TEST

START_TEST(test_abi_backend_layout_is_pinned) {
  ck_assert_uint_eq(sizeof(sb_backend_v1), 272);
  ck_assert_uint_eq(SB_BACKEND_V1_0_SIZE, 192);
  ck_assert_uint_eq(offsetof(sb_backend_v1, struct_size), 0);
  ck_assert_uint_eq(offsetof(sb_backend_v1, abi_major), 4);
  ck_assert_uint_eq(offsetof(sb_backend_v1, abi_minor), 8);
  ck_assert_uint_eq(offsetof(sb_backend_v1, name), 16);
  ck_assert_uint_eq(offsetof(sb_backend_v1, version), 24);
  ck_assert_uint_eq(offsetof(sb_backend_v1, description), 32);
  ck_assert_uint_eq(offsetof(sb_backend_v1, capabilities), 40);
  ck_assert_uint_eq(offsetof(sb_backend_v1, context_create), 48);
  ck_assert_uint_eq(offsetof(sb_backend_v1, context_destroy), 56);
  ck_assert_uint_eq(offsetof(sb_backend_v1, last_error), 64);
  ck_assert_uint_eq(offsetof(sb_backend_v1, rank_count), 72);
  ck_assert_uint_eq(offsetof(sb_backend_v1, tensor_create), 80);
  ck_assert_uint_eq(offsetof(sb_backend_v1, tensor_free), 88);
  ck_assert_uint_eq(offsetof(sb_backend_v1, tensor_write), 96);
  ck_assert_uint_eq(offsetof(sb_backend_v1, tensor_read), 104);
  ck_assert_uint_eq(offsetof(sb_backend_v1, tensor_set_unit_rows), 112);
  ck_assert_uint_eq(offsetof(sb_backend_v1, layer_create), 120);
  ck_assert_uint_eq(offsetof(sb_backend_v1, layer_free), 128);
  ck_assert_uint_eq(offsetof(sb_backend_v1, layer_forward), 136);
  ck_assert_uint_eq(offsetof(sb_backend_v1, layer_ibp), 144);
  ck_assert_uint_eq(offsetof(sb_backend_v1, layer_backward), 152);
  ck_assert_uint_eq(offsetof(sb_backend_v1, concretize), 160);
  ck_assert_uint_eq(offsetof(sb_backend_v1, memory_mark_baseline), 168);
  ck_assert_uint_eq(offsetof(sb_backend_v1, memory_reset_peak), 176);
  ck_assert_uint_eq(offsetof(sb_backend_v1, memory_stats), 184);
  /* @since 1.1, appended after the 1.0 descriptor. */
  ck_assert_uint_eq(offsetof(sb_backend_v1, layer_backward_vjp), 192);
  ck_assert_uint_eq(offsetof(sb_backend_v1, concretize_vjp), 200);
  ck_assert_uint_eq(offsetof(sb_backend_v1, relu_init_alpha), 208);
  ck_assert_uint_eq(offsetof(sb_backend_v1, adam_step), 216);
  ck_assert_uint_eq(offsetof(sb_backend_v1, beta_apply), 224);
  ck_assert_uint_eq(offsetof(sb_backend_v1, beta_vjp), 232);
  /* @since 1.2: ranks that are processes. */
  ck_assert_uint_eq(offsetof(sb_backend_v1, process_info), 240);
  ck_assert_uint_eq(offsetof(sb_backend_v1, broadcast_host), 248);
  ck_assert_uint_eq(offsetof(sb_backend_v1, lost_rank), 256);
  /* @since 1.3 */
  ck_assert_uint_eq(offsetof(sb_backend_v1, tensor_create_empty), 264);
}
END_TEST

START_TEST(test_abi_vjp_args_layout_is_pinned) {
  ck_assert_uint_eq(sizeof(sb_vjp_args_v1), 96);
  ck_assert_uint_eq(offsetof(sb_vjp_args_v1, struct_size), 0);
  ck_assert_uint_eq(offsetof(sb_vjp_args_v1, side), 4);
  ck_assert_uint_eq(offsetof(sb_vjp_args_v1, A_out), 8);
  ck_assert_uint_eq(offsetof(sb_vjp_args_v1, pre_lower), 16);
  ck_assert_uint_eq(offsetof(sb_vjp_args_v1, pre_upper), 24);
  ck_assert_uint_eq(offsetof(sb_vjp_args_v1, alpha), 32);
  ck_assert_uint_eq(offsetof(sb_vjp_args_v1, grad_A_in), 40);
  ck_assert_uint_eq(offsetof(sb_vjp_args_v1, grad_bias), 56);
  ck_assert_uint_eq(offsetof(sb_vjp_args_v1, grad_A_out), 64);
  ck_assert_uint_eq(offsetof(sb_vjp_args_v1, accumulate_A_out), 72);
  ck_assert_uint_eq(offsetof(sb_vjp_args_v1, grad_alpha), 80);
  ck_assert_uint_eq(offsetof(sb_vjp_args_v1, accumulate_alpha), 88);
}
END_TEST

START_TEST(test_abi_adam_args_layout_is_pinned) {
  ck_assert_uint_eq(sizeof(sb_adam_args_v1), 36);
  ck_assert_uint_eq(offsetof(sb_adam_args_v1, struct_size), 0);
  ck_assert_uint_eq(offsetof(sb_adam_args_v1, step), 4);
  ck_assert_uint_eq(offsetof(sb_adam_args_v1, learning_rate), 8);
  ck_assert_uint_eq(offsetof(sb_adam_args_v1, beta1), 12);
  ck_assert_uint_eq(offsetof(sb_adam_args_v1, beta2), 16);
  ck_assert_uint_eq(offsetof(sb_adam_args_v1, epsilon), 20);
  ck_assert_uint_eq(offsetof(sb_adam_args_v1, maximize), 24);
  ck_assert_uint_eq(offsetof(sb_adam_args_v1, clamp_min), 28);
  ck_assert_uint_eq(offsetof(sb_adam_args_v1, clamp_max), 32);
}
END_TEST

#endif

START_TEST(test_abi_has_member_respects_declared_size) {
  sb_backend_v1 desc;
  memset(&desc, 0, sizeof desc);
  desc.struct_size = sizeof desc;
  ck_assert(SB_HAS_MEMBER(&desc, sb_backend_v1, memory_stats));

  /* A writer that stopped before memory_stats: the member before it is
   * there, memory_stats itself is not. */
  desc.struct_size = offsetof(sb_backend_v1, memory_stats);
  ck_assert(!SB_HAS_MEMBER(&desc, sb_backend_v1, memory_stats));
  ck_assert(SB_HAS_MEMBER(&desc, sb_backend_v1, memory_reset_peak));

  /* One byte short of a member is still absent. */
  desc.struct_size = offsetof(sb_backend_v1, abi_minor) + 3;
  ck_assert(!SB_HAS_MEMBER(&desc, sb_backend_v1, abi_minor));
  ck_assert(SB_HAS_MEMBER(&desc, sb_backend_v1, abi_major));

  /* A 1.0 backend has none of the 1.1 members. */
  desc.struct_size = SB_BACKEND_V1_0_SIZE;
  ck_assert(SB_HAS_MEMBER(&desc, sb_backend_v1, memory_stats));
  ck_assert(!SB_HAS_MEMBER(&desc, sb_backend_v1, layer_backward_vjp));

  desc.struct_size = 0;
  ck_assert(!SB_HAS_MEMBER(&desc, sb_backend_v1, abi_major));
}
END_TEST

START_TEST(test_abi_has_member_works_for_host_and_args) {
  sb_host_v1 host = {.struct_size = offsetof(sb_host_v1, log)};
  ck_assert(SB_HAS_MEMBER(&host, sb_host_v1, abi_minor));
  ck_assert(!SB_HAS_MEMBER(&host, sb_host_v1, log));
  sb_backward_args_v1 args = {.struct_size = sizeof args};
  ck_assert(SB_HAS_MEMBER(&args, sb_backward_args_v1, bias));
  sb_memory_stats_v1 stats = {
      .struct_size = offsetof(sb_memory_stats_v1, device_used_bytes)};
  ck_assert(SB_HAS_MEMBER(&stats, sb_memory_stats_v1, baseline_bytes));
  ck_assert(!SB_HAS_MEMBER(&stats, sb_memory_stats_v1, device_used_bytes));
}
END_TEST

START_TEST(test_abi_version_and_entry_symbol_are_v1) {
  ck_assert_int_eq(SB_ABI_MAJOR, 1);
  ck_assert_int_eq(SB_ABI_MINOR, 3);
  ck_assert_str_eq(SB_ENTRY_SYMBOL_V1, "sb_backend_get_v1");
}
END_TEST

START_TEST(test_abi_status_strings_are_distinct) {
  const int codes[] = {SB_OK,
                       SB_ERR_INVALID_ARGUMENT,
                       SB_ERR_OUT_OF_MEMORY,
                       SB_ERR_UNSUPPORTED,
                       SB_ERR_DEVICE,
                       SB_ERR_COMMUNICATION,
                       SB_ERR_INTERNAL,
                       SB_ERR_RANK_FAILED};
  const size_t n = sizeof codes / sizeof codes[0];
  for (size_t i = 0; i < n; i++) {
    ck_assert_str_ne(sb_status_to_string(codes[i]), "unknown status");
    for (size_t j = 0; j < i; j++)
      ck_assert_str_ne(sb_status_to_string(codes[i]),
                       sb_status_to_string(codes[j]));
  }
  ck_assert_str_eq(sb_status_to_string(-1000), "unknown status");
}
END_TEST

int main(void) {
  Suite *s = suite_create("abi");
  TCase *tc = tcase_create("v1");
#if defined(__x86_64__) && defined(__LP64__)
  tcase_add_test(tc, test_abi_host_layout_is_pinned);
  tcase_add_test(tc, test_abi_option_layout_is_pinned);
  tcase_add_test(tc, test_abi_layer_desc_layout_is_pinned);
  tcase_add_test(tc, test_abi_backward_args_layout_is_pinned);
  tcase_add_test(tc, test_abi_memory_stats_layout_is_pinned);
  tcase_add_test(tc, test_abi_backend_layout_is_pinned);
  tcase_add_test(tc, test_abi_vjp_args_layout_is_pinned);
  tcase_add_test(tc, test_abi_adam_args_layout_is_pinned);
#endif
  tcase_add_test(tc, test_abi_has_member_respects_declared_size);
  tcase_add_test(tc, test_abi_has_member_works_for_host_and_args);
  tcase_add_test(tc, test_abi_version_and_entry_symbol_are_v1);
  tcase_add_test(tc, test_abi_status_strings_are_distinct);
  suite_add_tcase(s, tc);
  SRunner *sr = srunner_create(s);
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
