# parley_embed_files(<out.cpp> NAMESPACE <ns> FUNCTION <name> HEADER <include> FILES <name=path>...)
#
# Generates <out.cpp> at build time: it defines `std::span<const parley::EmbeddedFile>
# <ns>::<name>()` (declared in <include>) with the bytes of each file under its name. The
# source is regenerated when a file changes. See src/common/embedded_file.h.
function(parley_embed_files out)
  cmake_parse_arguments(ARG "" "NAMESPACE;FUNCTION;HEADER" "FILES" ${ARGN})
  set(paths)
  set(spec)
  foreach(entry IN LISTS ARG_FILES)
    string(FIND "${entry}" "=" eq)
    string(SUBSTRING "${entry}" ${eq} -1 path)
    string(SUBSTRING "${path}" 1 -1 path)
    if(NOT EXISTS "${path}")
      message(FATAL_ERROR "parley_embed_files: ${path} does not exist")
    endif()
    list(APPEND paths "${path}")
    # '|' separates entries on the command line (a ';' would split the argument).
    string(APPEND spec "${entry}|")
  endforeach()
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DNAMESPACE=${ARG_NAMESPACE} -DFUNCTION=${ARG_FUNCTION}
            -DHEADER=${ARG_HEADER} "-DFILES=${spec}" -P ${PROJECT_SOURCE_DIR}/cmake/embed_files.cmake
    DEPENDS ${paths} ${PROJECT_SOURCE_DIR}/cmake/embed_files.cmake
    COMMENT "Embedding ${ARG_NAMESPACE}::${ARG_FUNCTION}"
    VERBATIM)
endfunction()
