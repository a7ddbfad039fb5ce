// Test-only access to an engine's internals. Nothing here is part of the
// public API; tests include it to inject faults.
#pragma once

#include "kvinfer/kvinfer.h"

namespace kvinfer {

// Makes the `nth` (1-based) KV block allocation for sample `sample_index`
// of request `id` throw std::bad_alloc, as a failed allocation would, once.
void FailBlockAllocationForTest(Engine& engine, RequestId id, int sample_index, int nth);

}  // namespace kvinfer
