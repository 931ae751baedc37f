/*
 * mongoq/export.h - symbol visibility.
 *
 * The library is built with hidden visibility; MONGOQ_EXPORT marks the public API. Users of the
 * static library get MONGOQ_STATIC from the CMake target (or define it themselves).
 */
#ifndef MONGOQ_EXPORT_H
#define MONGOQ_EXPORT_H

#if defined(MONGOQ_STATIC)
#define MONGOQ_EXPORT
#elif defined(_WIN32)
#if defined(MONGOQ_COMPILING)
#define MONGOQ_EXPORT __declspec(dllexport)
#else
#define MONGOQ_EXPORT __declspec(dllimport)
#endif
#else
#define MONGOQ_EXPORT __attribute__((visibility("default")))
#endif

#endif /* MONGOQ_EXPORT_H */
