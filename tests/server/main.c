/* Placeholder until the server lands. */
#include "common.h"
int
main(void)
{
    ms_log("not implemented yet");
    return 1;
}
