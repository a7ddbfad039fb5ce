# Writes a C++ source defining `std::string_view <FUNCTION>()` in namespace
# <NAMESPACE> that returns the bytes of <INPUT>, embedded as a char array
# (hex bytes, so any content is safe).
#   cmake -DINPUT=web/chat.html -DOUTPUT=chat_page.cpp -DNAMESPACE=kvinfer::serve
#         -DFUNCTION=ChatPageHtml -DHEADER=serve/chat_page.h -P embed_file.cmake
file(READ "${INPUT}" content HEX)
string(LENGTH "${content}" hex_length)
math(EXPR size "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${content}")
string(REGEX REPLACE "(0x[0-9a-f][0-9a-f],){32}" "\\0\n" bytes "${bytes}")
file(WRITE "${OUTPUT}.tmp"
"// Generated from ${INPUT} by cmake/embed_file.cmake; do not edit.\n"
"#include \"${HEADER}\"\n\n"
"namespace ${NAMESPACE} {\n"
"namespace {\n"
"const unsigned char kBytes[] = {\n${bytes}\n0x00};\n"
"}  // namespace\n\n"
"std::string_view ${FUNCTION}() {\n  return std::string_view(reinterpret_cast<const char*>(kBytes), ${size});\n}\n\n"
"}  // namespace ${NAMESPACE}\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
