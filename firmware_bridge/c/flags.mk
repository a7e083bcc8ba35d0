# Compiler flags of the bridge's C programs, shared by the Makefile and tests/test_bridge_c.py (which builds
# with gcc directly, reading these "NAME := value" lines, into a temporary folder).
STRICT := -std=c99 -Wall -Wextra -Werror -pedantic -Wshadow -Wstrict-prototypes -Wconversion -ffp-contract=off
SANITIZE := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
