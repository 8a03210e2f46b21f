/* Included in every C++ file of llama.cpp and ggml (rocky9.cmake).
 *
 * GCC 12's libstdc++ gave std::condition_variable::wait a new symbol version (GLIBCXX_3.4.30,
 * which only changed how it behaves under pthread_cancel); Rocky Linux 9's libstdc++ (GCC 11)
 * stops at GLIBCXX_3.4.29. Built on a newer compiler (the Debian CI machines), the shared
 * libraries would not load on the appliance: bind their calls to the version every libstdc++
 * since GCC 4.3 has. A build on Rocky 9 itself gets the same binding without this. */
/* (libstdc++'s own macros are not defined yet here, before any header.) */
#if defined(__cplusplus) && defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
__asm__(".symver _ZNSt18condition_variable4waitERSt11unique_lockISt5mutexE,"
        "_ZNSt18condition_variable4waitERSt11unique_lockISt5mutexE@GLIBCXX_3.4.11");
#endif
