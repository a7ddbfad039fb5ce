// Internal access to a public Model's implementation, for the engine and
// the tests; the public header does not expose it.
#pragma once

#include <memory>

#include "kvinfer/kvinfer.h"
#include "model/model_impl.h"

namespace kvinfer {

struct ModelAccess {
  static const std::shared_ptr<const ModelImpl>& Impl(const Model& m) { return m.impl_; }
};

inline const ModelImpl& ImplOf(const Model& m) { return *ModelAccess::Impl(m); }

}  // namespace kvinfer
