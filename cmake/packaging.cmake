# Debian packages from the tree (scripts/package): cpack -G DEB makes one package per install
# component: libmongoq0 (runtime: the shared library, SONAME libmongoq.so.<major>),
# libmongoq-dev (dev: headers, static library, CMake package, mongoq.pc) and mongoq-tools
# (tools: the mongoq program and its man page).
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME mongoq)
set(CPACK_PACKAGE_VENDOR "mongoq")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_CONTACT "mongoq maintainers <mongoq@localhost>")
set(CPACK_COMPONENTS_ALL runtime dev tools)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME libmongoq${PROJECT_VERSION_MAJOR})
set(CPACK_DEBIAN_RUNTIME_PACKAGE_DEPENDS "libmongoc-1.0-0 (>= 1.23), libbson-1.0-0 (>= 1.23)")
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION "mongoq: a durable message queue on MongoDB (library)")
set(CPACK_DEBIAN_DEV_PACKAGE_NAME libmongoq-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
  "libmongoq${PROJECT_VERSION_MAJOR} (= ${PROJECT_VERSION}), libmongoc-dev (>= 1.23)")
set(CPACK_COMPONENT_DEV_DESCRIPTION "mongoq: headers, static library, CMake and pkg-config files")
set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME mongoq-tools)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_TOOLS_PACKAGE_DEPENDS
  "libmongoq${PROJECT_VERSION_MAJOR} (= ${PROJECT_VERSION}), libmongoc-1.0-0 (>= 1.23)")
set(CPACK_COMPONENT_TOOLS_DESCRIPTION "mongoq: the mongoq command-line tool")
include(CPack)
