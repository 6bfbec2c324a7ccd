# The stand-in install's package file: what ExecuTorch's tools/cmake/executorch-config.cmake gives a
# consumer that the module reads (the imported targets and EXECUTORCH_INCLUDE_DIRS).
include("${CMAKE_CURRENT_LIST_DIR}/ExecuTorchTargets.cmake")
set(EXECUTORCH_INCLUDE_DIRS "${CMAKE_CURRENT_LIST_DIR}/../../../include")
set(EXECUTORCH_FOUND ON)
set(executorch_FOUND TRUE)
