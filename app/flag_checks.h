// Checks of the command line that apply to every subcommand (app/common.cpp).
#pragma once
#include <CLI/CLI.hpp>

namespace qkvlab::app {

// Every integer flag of every subcommand of `app` gets a check of its raw text: a whole number in decimal that the
// program can represent (int64; uint64 for unsigned flags). CLI11 alone would clamp --steps 99999999999999999999 to
// the largest int64 in silence and read 0x10 as 16. Call once, after every command is registered.
void check_integer_flags(CLI::App& app);

}  // namespace qkvlab::app
