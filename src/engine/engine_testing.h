// Test-only access to an engine's internals. Nothing here is part of the
// public API; tests include it to inject faults.
#pragma once

#include "kvinfer/kvinfer.h"

namespace kvinfer {

// Makes the `nth` (1-based) KV block allocation for request `id` (a sample
// id for n > 1) throw std::bad_alloc, as a failed allocation would, once.
void FailBlockAllocationForTest(Engine& engine, RequestId id, int nth);

}  // namespace kvinfer
