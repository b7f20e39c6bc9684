// main() of the functions unit tests. Tests that use WorkerIsolation::kProcess start this same
// binary as their worker process (the hidden worker subcommand).

#include <gtest/gtest.h>

#include "functions/runtime.h"

int main(int argc, char** argv) {
  if (auto rc = parley::functions::runFunctionWorkerIfAsked(argc, argv)) return *rc;
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
