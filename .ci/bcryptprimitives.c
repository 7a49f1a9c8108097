/*
 * A stand-in for bcryptprimitives.dll, which Debian's wine 8 lacks.
 *
 * Rust's std (since 1.78) takes random bytes on Windows from ProcessPrng in bcryptprimitives.dll;
 * without the DLL every Rust .exe under that wine exits with status 53 before main runs. This
 * forwards ProcessPrng to BCryptGenRandom, which wine has. `.ci/wine` builds it with mingw-w64
 * into the wine prefix used for the tests; it is never shipped.
 */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x7fffffff ? 0x7fffffff : (ULONG)len;
        if (BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
