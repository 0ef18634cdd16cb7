/* SPDX-License-Identifier: MIT */
/* How much memory one declaration of an input file may ask for. */
#include "config.h"

#include <stdlib.h>

#include "limits.h"

gint64 sb_max_bytes(void) {
  const char *text = g_getenv(SB_MAX_BYTES_ENV);
  if (text == NULL)
    return SB_MAX_BYTES_DEFAULT;
  char *end = NULL;
  guint64 value = g_ascii_strtoull(text, &end, 10);
  int shift = 0;
  if (end == text)
    return SB_MAX_BYTES_DEFAULT;
  switch (*end) {
  case 'K':
    shift = 10;
    end++;
    break;
  case 'M':
    shift = 20;
    end++;
    break;
  case 'G':
    shift = 30;
    end++;
    break;
  default:
    break;
  }
  if (*end != '\0' || value == 0 || value > (G_MAXINT64 >> shift))
    return SB_MAX_BYTES_DEFAULT;
  return (gint64)(value << shift);
}

gboolean sb_limit_fits(double count) {
  return count * sizeof(double) <= (double)sb_max_bytes();
}

gboolean sb_limit_elements(int n, const int64_t *dims, int64_t *count) {
  const int64_t max = sb_max_bytes() / (int64_t)sizeof(double);
  int64_t c = 1;
  for (int i = 0; i < n; i++) {
    if (dims[i] > 0 && c > max / dims[i])
      return FALSE;
    c *= dims[i];
  }
  *count = c;
  return TRUE;
}
