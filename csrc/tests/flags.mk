# Compiler flags of the C tests, shared by the Makefile and tests/test_csynth.py (which builds with gcc
# directly, reading these "NAME := value" lines), so both build the same programs.
STRICT := -std=c99 -Wall -Wextra -Werror -pedantic -Wshadow -Wstrict-prototypes -ffp-contract=off
SANITIZE := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# x86-64 only: any floating-point instruction becomes a compile error (proves the fixed-point build needs no FPU)
NO_FPU_X86_64 := -mgeneral-regs-only
