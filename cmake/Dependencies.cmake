# Third-party libraries, all from Debian bookworm packages (DESIGN.md §5).
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(fmt REQUIRED)
find_package(cxxopts REQUIRED)
find_package(Boost 1.74 REQUIRED COMPONENTS context)
find_package(yaml-cpp REQUIRED)

pkg_check_modules(LIBURING REQUIRED IMPORTED_TARGET liburing)
add_library(ztunnel::uring ALIAS PkgConfig::LIBURING)
pkg_check_modules(NGHTTP2 REQUIRED IMPORTED_TARGET GLOBAL libnghttp2)

# BoringSSL, built from upstream source by scripts/setup.sh into a versioned prefix
# (static libraries: nothing to find at run time). Its include directory is a system
# directory placed first, so <openssl/...> never picks OpenSSL's headers.
# Keep the version and the ZTUNNEL_DEPS_DIR default in step with scripts/setup.sh.
if(DEFINED ENV{ZTUNNEL_DEPS_DIR})
  set(_zt_deps "$ENV{ZTUNNEL_DEPS_DIR}")
else()
  set(_zt_deps "/opt/ztunnel-deps")
endif()
set(BORINGSSL_ROOT "${_zt_deps}/boringssl-5.4.0" CACHE PATH "BoringSSL prefix (scripts/setup.sh)")
if(NOT EXISTS "${BORINGSSL_ROOT}/lib/libssl.a" OR NOT EXISTS "${BORINGSSL_ROOT}/include/openssl/ssl.h")
  message(FATAL_ERROR "BoringSSL not found in ${BORINGSSL_ROOT}: run `make setup` (scripts/setup.sh builds it)")
endif()
add_library(boringssl::crypto STATIC IMPORTED)
set_target_properties(boringssl::crypto PROPERTIES
  IMPORTED_LOCATION ${BORINGSSL_ROOT}/lib/libcrypto.a
  INTERFACE_INCLUDE_DIRECTORIES ${BORINGSSL_ROOT}/include
  INTERFACE_SYSTEM_INCLUDE_DIRECTORIES ${BORINGSSL_ROOT}/include
  INTERFACE_LINK_LIBRARIES Threads::Threads)
add_library(boringssl::ssl STATIC IMPORTED)
set_target_properties(boringssl::ssl PROPERTIES
  IMPORTED_LOCATION ${BORINGSSL_ROOT}/lib/libssl.a
  INTERFACE_INCLUDE_DIRECTORIES ${BORINGSSL_ROOT}/include
  INTERFACE_SYSTEM_INCLUDE_DIRECTORIES ${BORINGSSL_ROOT}/include
  INTERFACE_LINK_LIBRARIES boringssl::crypto)

# ZDS messages (inpod/zds.proto): protoc and the lite runtime from Debian.
find_package(Protobuf REQUIRED)

# Metrics: prometheus-cpp's core library only (registry + text serializer).
find_package(prometheus-cpp CONFIG REQUIRED COMPONENTS core)
