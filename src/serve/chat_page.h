// The chat page served at GET /: web/chat.html, embedded in the binary at
// build time (cmake/embed_file.cmake), so the server needs no files beside it.
#pragma once

#include <string_view>

namespace kvinfer::serve {

std::string_view ChatPageHtml();

}  // namespace kvinfer::serve
