// Small helpers for absl::Status plumbing. Abseil 20220623 ships neither
// ABSL_RETURN_IF_ERROR nor ASSIGN_OR_RETURN, so the project has its own.
#ifndef ATTENTION_CORE_STATUS_MACROS_H_
#define ATTENTION_CORE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns the status from the enclosing function if `expr` is not OK.
#define ATTN_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::absl::Status attn_status_ = (expr);        \
    if (!attn_status_.ok()) return attn_status_; \
  } while (false)

#define ATTN_CONCAT_INNER_(a, b) a##b
#define ATTN_CONCAT_(a, b) ATTN_CONCAT_INNER_(a, b)

// `ATTN_ASSIGN_OR_RETURN(auto x, MakeX());` assigns the value of a StatusOr
// or returns its status from the enclosing function.
#define ATTN_ASSIGN_OR_RETURN(lhs, expr) \
  ATTN_ASSIGN_OR_RETURN_IMPL_(ATTN_CONCAT_(attn_statusor_, __LINE__), lhs, expr)
#define ATTN_ASSIGN_OR_RETURN_IMPL_(var, lhs, expr) \
  auto var = (expr);                                \
  if (!var.ok()) return std::move(var).status();    \
  lhs = std::move(var).value()

#endif  // ATTENTION_CORE_STATUS_MACROS_H_
