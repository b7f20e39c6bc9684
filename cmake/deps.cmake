# Third-party dependencies, all from Debian 12 packages (see tools/setup.sh).
find_package(Threads REQUIRED)
find_package(Boost 1.81 EXACT REQUIRED COMPONENTS json url)
find_package(OpenSSL REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(PostgreSQL REQUIRED)  # libpq: the PostgreSQL store
find_package(PkgConfig REQUIRED)
pkg_check_modules(SODIUM REQUIRED IMPORTED_TARGET libsodium)
pkg_check_modules(SECCOMP REQUIRED IMPORTED_TARGET libseccomp)
pkg_check_modules(NATS REQUIRED IMPORTED_TARGET libnats)  # nats.c: the NATS JetStream bus
find_package(fmt REQUIRED)
find_package(spdlog REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
find_package(GTest REQUIRED)

# V8 from Debian's libnode108, unpacked by tools/setup.sh into third_party/libnode (never the
# system Node). Headers are SYSTEM so our warning flags do not apply to them.
set(PARLEY_LIBNODE_ROOT ${CMAKE_SOURCE_DIR}/third_party/libnode/root/usr CACHE PATH "libnode prefix")
if(EXISTS /usr/include/node/v8.h AND EXISTS /usr/lib/x86_64-linux-gnu/libnode.so.108
   AND NOT EXISTS ${PARLEY_LIBNODE_ROOT}/include/node/v8.h)
  set(PARLEY_LIBNODE_ROOT /usr)
endif()
if(NOT EXISTS ${PARLEY_LIBNODE_ROOT}/include/node/v8.h)
  message(FATAL_ERROR "V8 headers not found under ${PARLEY_LIBNODE_ROOT}; run tools/setup.sh")
endif()
# An imported shared library, so that CMake puts its folder in the build tree's rpath and replaces
# that with the install rpath ($ORIGIN/../lib, src/app/CMakeLists.txt) on `cmake --install`.
set(PARLEY_LIBNODE_SO ${PARLEY_LIBNODE_ROOT}/lib/x86_64-linux-gnu/libnode.so.108)
add_library(parley_libnode SHARED IMPORTED)
set_target_properties(parley_libnode PROPERTIES IMPORTED_LOCATION ${PARLEY_LIBNODE_SO}
                                                IMPORTED_SONAME libnode.so.108)
add_library(parley_v8 INTERFACE)
target_include_directories(parley_v8 SYSTEM INTERFACE ${PARLEY_LIBNODE_ROOT}/include/node)
target_link_libraries(parley_v8 INTERFACE parley_libnode)

# jemalloc for the server binary (Debian libjemalloc-dev): the turn path allocates on many
# threads at once and glibc's malloc was ~10 % of the server's CPU there (see BENCHMARKS.md).
# Not with the sanitizers, which bring their own allocator.
if(NOT PARLEY_SANITIZE)
  find_library(PARLEY_JEMALLOC NAMES libjemalloc.so.2 jemalloc REQUIRED)
endif()

if(PARLEY_BUILD_BENCHMARKS)
  find_package(benchmark REQUIRED)
endif()
