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

# BoringSSL as Debian ships it for the Android SDK: headers under include/android,
# libraries in the multiarch android/ folder (found at run time through an rpath).
# Its include directory goes first so <openssl/...> never picks OpenSSL's headers.
set(BORINGSSL_INCLUDE_DIR /usr/include/android)
set(BORINGSSL_LIB_DIR /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/android)
find_library(BORINGSSL_SSL_LIB ssl PATHS ${BORINGSSL_LIB_DIR} NO_DEFAULT_PATH REQUIRED)
find_library(BORINGSSL_CRYPTO_LIB crypto PATHS ${BORINGSSL_LIB_DIR} NO_DEFAULT_PATH REQUIRED)
add_library(boringssl::crypto SHARED IMPORTED)
set_target_properties(boringssl::crypto PROPERTIES
  IMPORTED_LOCATION ${BORINGSSL_CRYPTO_LIB}
  IMPORTED_NO_SONAME FALSE
  INTERFACE_INCLUDE_DIRECTORIES ${BORINGSSL_INCLUDE_DIR})
add_library(boringssl::ssl SHARED IMPORTED)
set_target_properties(boringssl::ssl PROPERTIES
  IMPORTED_LOCATION ${BORINGSSL_SSL_LIB}
  INTERFACE_INCLUDE_DIRECTORIES ${BORINGSSL_INCLUDE_DIR}
  INTERFACE_LINK_LIBRARIES boringssl::crypto)
set(CMAKE_BUILD_RPATH ${BORINGSSL_LIB_DIR})
set(CMAKE_INSTALL_RPATH ${BORINGSSL_LIB_DIR})
