# Third-party libraries, all from Debian bookworm packages (DESIGN.md §5).
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(fmt REQUIRED)
find_package(cxxopts REQUIRED)
find_package(Boost 1.74 REQUIRED COMPONENTS context)

pkg_check_modules(LIBURING REQUIRED IMPORTED_TARGET liburing)
add_library(ztunnel::uring ALIAS PkgConfig::LIBURING)
