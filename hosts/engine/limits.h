/* SPDX-License-Identifier: MIT */
/* How much memory one declaration of an input file may ask for. ONNX
 * shapes (initializers, the network input, every operator's output) and
 * VNNLIB tables (input boxes, atom coefficients) are checked against it
 * before anything of that size is allocated, so that a mistaken or hostile
 * file gets an error that names the limit instead of exhausting memory. */
#ifndef SB_LIMITS_H
#define SB_LIMITS_H

#include <glib.h>

G_BEGIN_DECLS

/* 1 GiB: above the largest weight matrix of the VNN-COMP 2023 benchmarks
 * (vgg16's first fully connected layer, 25088 x 4096: 822 MB at 8 bytes
 * an element). */
#define SB_MAX_BYTES_DEFAULT (G_GINT64_CONSTANT(1) << 30)
/* Overrides the default: a byte count, optionally followed by K, M or G
 * (powers of 1024). Anything else leaves the default. */
#define SB_MAX_BYTES_ENV "SHARDBOUND_MAX_BYTES"

/* The limit in effect, in bytes (read from the environment on each call,
 * which happens once per declaration: cheap next to parsing it). */
gint64 sb_max_bytes(void);

/* The element count of one declaration: every element counts as a double
 * (8 bytes), how the engine stores bounds and how ONNX float64 data is
 * read. FALSE (with *count unchanged) when the product of the n dims
 * overflows or exceeds sb_max_bytes (); negative dims are the caller's to
 * refuse. */
gboolean sb_limit_elements(int n, const int64_t *dims, int64_t *count);

/* TRUE when `count` elements (a double, to take products of counts
 * without overflow) fit in the limit. */
gboolean sb_limit_fits(double count);

G_END_DECLS

#endif
