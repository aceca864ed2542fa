# Third-party libraries, all from Debian bookworm packages (DESIGN.md §5).
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(fmt REQUIRED)
find_package(cxxopts REQUIRED)
# ZTUNNEL_STATIC_DEPS links the libraries Debian also ships as static archives into the
# binaries: only the objects we use are mapped; with --gc-sections this took the node
# process's idle RSS from 9.0 to 7.6 MiB (docs/BENCHMARKS.md).
if(ZTUNNEL_STATIC_DEPS)
  set(Boost_USE_STATIC_LIBS ON)
endif()
find_package(Boost 1.74 REQUIRED COMPONENTS context)
find_package(yaml-cpp REQUIRED)
find_package(nlohmann_json 3 REQUIRED)  # header-only: the config dump

pkg_check_modules(LIBURING REQUIRED IMPORTED_TARGET liburing)
add_library(ztunnel::uring ALIAS PkgConfig::LIBURING)
pkg_check_modules(NGHTTP2 REQUIRED IMPORTED_TARGET GLOBAL libnghttp2)

# ztunnel_prefer_static(<imported target> <archive name>): link the archive instead.
function(ztunnel_prefer_static target archive)
  find_library(_zt_static_${archive} NAMES ${archive})
  if(NOT _zt_static_${archive})
    message(FATAL_ERROR "${archive} not found (ZTUNNEL_STATIC_DEPS=ON): run `make setup`")
  endif()
  set_property(TARGET ${target} PROPERTY INTERFACE_LINK_LIBRARIES ${_zt_static_${archive}})
endfunction()

add_library(ztunnel_yaml INTERFACE)
if(ZTUNNEL_STATIC_DEPS)
  ztunnel_prefer_static(PkgConfig::LIBURING liburing.a)
  ztunnel_prefer_static(PkgConfig::NGHTTP2 libnghttp2.a)
  ztunnel_prefer_static(ztunnel_yaml libyaml-cpp.a)
  target_include_directories(ztunnel_yaml SYSTEM INTERFACE
                             $<TARGET_PROPERTY:yaml-cpp,INTERFACE_INCLUDE_DIRECTORIES>)
else()
  target_link_libraries(ztunnel_yaml INTERFACE yaml-cpp)
endif()

# BoringSSL, built from upstream source by scripts/setup.sh into a versioned prefix
# (static libraries: nothing to find at run time). Its include directory is a system
# directory placed first, so <openssl/...> never picks OpenSSL's headers.
# Keep the version, build revision and ZTUNNEL_DEPS_DIR default in step with
# scripts/setup.sh.
if(DEFINED ENV{ZTUNNEL_DEPS_DIR})
  set(_zt_deps "$ENV{ZTUNNEL_DEPS_DIR}")
else()
  set(_zt_deps "/opt/ztunnel-deps")
endif()
set(BORINGSSL_ROOT "${_zt_deps}/boringssl-5.4.0-2" CACHE PATH "BoringSSL prefix (scripts/setup.sh)")
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
if(ZTUNNEL_STATIC_DEPS)
  find_library(_zt_protobuf_lite_static NAMES libprotobuf-lite.a REQUIRED)
  set(Protobuf_LITE_LIBRARIES ${_zt_protobuf_lite_static} Threads::Threads)
endif()

# Metrics: prometheus-cpp's core library only (registry + text serializer).
find_package(prometheus-cpp CONFIG REQUIRED COMPONENTS core)
