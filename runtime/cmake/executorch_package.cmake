# ExecuTorch from a package instead of the executorch wheel's folder (EXECUTORCH_ROOT): defines the
# INTERFACE target `executorch_prebuilt` that CMakeLists.txt's wheel path defines, from one of
#
#   1. an ExecuTorch source build's `cmake --install` (Android NDK, iOS, macOS): find_package gives
#      the build's own target names (executorch, extension_module_static, xnnpack_backend, ...).
#      Point executorch_DIR at <install>/lib/cmake/ExecuTorch, or CMAKE_PREFIX_PATH at <install>.
#   2. the executorch wheel's package (<wheel>/lib/cmake/executorch): namespaced targets
#      (executorch::runtime, executorch::backend_xnnpack, ...); needs CMake >= 3.28.
#   3. Apple xcframeworks (ExecuTorch's scripts/build_apple_frameworks.sh, or the swiftpm-<version>
#      branch): EDGEVLM_EXECUTORCH_XCFRAMEWORKS = the folder holding executorch.xcframework & co.
#
# What is linked is what the decoder .pte needs: the runtime with extension/module and
# extension/tensor, the threadpool, the XNNPACK delegate, and the optimized and quantized kernels.
# The delegate and kernel libraries only register themselves from static initialisers, so each is
# kept whole (--whole-archive / -force_load for archives, --no-as-needed for shared libraries).
include_guard(GLOBAL)

if(CMAKE_VERSION VERSION_LESS 3.24)
  message(FATAL_ERROR "cmake/executorch_package.cmake needs CMake >= 3.24 ($<LINK_LIBRARY:WHOLE_ARCHIVE>), "
                      "this is ${CMAKE_VERSION}: pip install 'cmake>=3.28' (or edgevlm[runtime])")
endif()
if(TARGET executorch_prebuilt)
  message(FATAL_ERROR "executorch_prebuilt is already defined: give either EXECUTORCH_ROOT (the wheel folder) "
                      "or EDGEVLM_EXECUTORCH_PACKAGE, not both")
endif()

set(EDGEVLM_EXECUTORCH_XCFRAMEWORKS "" CACHE PATH
    "Apple only: folder holding ExecuTorch's executorch/threadpool/backend_xnnpack/kernels_*.xcframework")
set(EDGEVLM_EXECUTORCH_XCFRAMEWORK_SUFFIX "" CACHE STRING
    "'' for the release xcframeworks, '_debug' for the debug ones (executorch_debug.xcframework, ...)")
set(EDGEVLM_EXECUTORCH_SOURCE "" CACHE PATH
    "ExecuTorch source checkout of the same release: headers the xcframeworks do not ship (kernel_util)")

add_library(executorch_prebuilt INTERFACE)

# Link one registration-only library so that it is kept. ExecuTorch 1.x exports its registration
# libraries with their own whole-archive/force_load option (executorch_target_link_options_shared_lib);
# adding a second one would put every object in twice (duplicate symbols), so that case links plainly.
function(_edgevlm_link_registering target)
  get_target_property(type ${target} TYPE)
  get_target_property(options ${target} INTERFACE_LINK_OPTIONS)
  if(NOT options)
    set(options "")
  endif()
  if(options MATCHES "whole-archive|force_load|WHOLEARCHIVE|no-as-needed")
    target_link_libraries(executorch_prebuilt INTERFACE ${target})
  elseif(type STREQUAL "SHARED_LIBRARY")
    target_link_libraries(executorch_prebuilt INTERFACE ${target})
    if(NOT APPLE)  # Mach-O keeps every dylib named on the link line
      target_link_options(executorch_prebuilt INTERFACE
                          "LINKER:--push-state,--no-as-needed,$<TARGET_FILE:${target}>,--pop-state")
    endif()
  else()
    target_link_libraries(executorch_prebuilt INTERFACE "$<LINK_LIBRARY:WHOLE_ARCHIVE,${target}>")
  endif()
endfunction()

# Targets the consumer cannot do without; the message names the ones missing and how to build them.
function(_edgevlm_require_targets where fix)
  set(missing "")
  foreach(target ${ARGN})
    if(NOT TARGET ${target})
      list(APPEND missing ${target})
    endif()
  endforeach()
  if(missing)
    list(JOIN missing ", " missing)
    message(FATAL_ERROR "the ExecuTorch package at ${where} has no ${missing}: ${fix}")
  endif()
endfunction()

if(EDGEVLM_EXECUTORCH_XCFRAMEWORKS)
  # ---- 3. Apple xcframeworks: one merged static archive per framework and platform slice ----------
  if(NOT APPLE)
    message(FATAL_ERROR "EDGEVLM_EXECUTORCH_XCFRAMEWORKS is for iOS/macOS builds; on ${CMAKE_SYSTEM_NAME} use an "
                        "ExecuTorch install (executorch_DIR) or the wheel (EXECUTORCH_ROOT)")
  endif()
  if(NOT DEFINED EDGEVLM_EXECUTORCH_XCFRAMEWORK_SLICE)
    if(CMAKE_SYSTEM_NAME STREQUAL "iOS" AND CMAKE_OSX_SYSROOT MATCHES "[Ss]imulator")
      set(EDGEVLM_EXECUTORCH_XCFRAMEWORK_SLICE ios-arm64-simulator)
    elseif(CMAKE_SYSTEM_NAME STREQUAL "iOS")
      set(EDGEVLM_EXECUTORCH_XCFRAMEWORK_SLICE ios-arm64)
    else()
      set(EDGEVLM_EXECUTORCH_XCFRAMEWORK_SLICE macos-arm64)
    endif()
  endif()
  set(_slice ${EDGEVLM_EXECUTORCH_XCFRAMEWORK_SLICE})
  set(_suffix "${EDGEVLM_EXECUTORCH_XCFRAMEWORK_SUFFIX}")
  foreach(name executorch threadpool backend_xnnpack kernels_optimized kernels_quantized)
    # side by side (build_apple_frameworks.sh's cmake-out/) or one folder each (Xcode's SwiftPM artifacts)
    file(GLOB archive "${EDGEVLM_EXECUTORCH_XCFRAMEWORKS}/${name}${_suffix}.xcframework/${_slice}/*.a"
                      "${EDGEVLM_EXECUTORCH_XCFRAMEWORKS}/*/${name}${_suffix}.xcframework/${_slice}/*.a")
    list(LENGTH archive count)
    if(NOT count EQUAL 1)
      message(FATAL_ERROR "expected one static library in ${name}${_suffix}.xcframework/${_slice} under "
                          "${EDGEVLM_EXECUTORCH_XCFRAMEWORKS}, found ${count}: build the xcframeworks with ExecuTorch's "
                          "scripts/build_apple_frameworks.sh (or take them from its swiftpm-<version> branch) and set "
                          "EDGEVLM_EXECUTORCH_XCFRAMEWORKS to the folder holding them")
    endif()
    add_library(edgevlm_et_${name} STATIC IMPORTED)
    set_target_properties(edgevlm_et_${name} PROPERTIES IMPORTED_LOCATION "${archive}")
    if(name STREQUAL "executorch")
      get_filename_component(_headers "${archive}" DIRECTORY)
      set(_headers "${_headers}/Headers")
    endif()
  endforeach()
  target_include_directories(executorch_prebuilt INTERFACE "${_headers}"
                             "${_headers}/executorch/runtime/core/portable_type/c10")
  # edgevlm's kernels include extension/kernel_util, which the executorch xcframework does not export
  if(NOT EXISTS "${_headers}/executorch/extension/kernel_util/make_boxed_from_unboxed_functor.h")
    if(NOT EXISTS "${EDGEVLM_EXECUTORCH_SOURCE}/extension/kernel_util/make_boxed_from_unboxed_functor.h")
      message(FATAL_ERROR "${_headers} lacks executorch/extension/kernel_util, which edgevlm's kernels include: set "
                          "EDGEVLM_EXECUTORCH_SOURCE to an ExecuTorch checkout of the release the xcframeworks were "
                          "built from (a folder named `executorch`, e.g. git clone -b v1.5.1 ... executorch)")
    endif()
    get_filename_component(_source_parent "${EDGEVLM_EXECUTORCH_SOURCE}" DIRECTORY)
    target_include_directories(executorch_prebuilt INTERFACE "${_source_parent}")
  endif()
  # the xcframeworks' kernels are built with the threadpool (ET_USE_THREADPOOL picks the parallel_for
  # declaration in thread_parallel_interface.h; edgevlm's kernels must agree)
  target_compile_definitions(executorch_prebuilt INTERFACE C10_USING_CUSTOM_GENERATED_MACROS ET_USE_THREADPOOL)
  foreach(name executorch backend_xnnpack kernels_optimized kernels_quantized)
    _edgevlm_link_registering(edgevlm_et_${name})
  endforeach()
  target_link_libraries(executorch_prebuilt INTERFACE edgevlm_et_threadpool "-framework Accelerate"
                        "-framework Foundation")
  set(EDGEVLM_EXECUTORCH_SOURCE_KIND "xcframeworks (${_slice})")
else()
  # CMAKE_FIND_ROOT_PATH_BOTH: the NDK and iOS toolchains search only their sysroot by default, and the
  # ExecuTorch install lives outside it
  find_package(executorch CONFIG QUIET CMAKE_FIND_ROOT_PATH_BOTH)
  if(NOT executorch_FOUND)
    message(FATAL_ERROR "no ExecuTorch CMake package found (executorch_DIR=${executorch_DIR}): build ExecuTorch for "
                        "this target and `cmake --install` it (runtime/platforms/android/README.md, "
                        "runtime/platforms/apple/README.md), then pass -Dexecutorch_DIR=<install>/lib/cmake/ExecuTorch "
                        "or -DCMAKE_PREFIX_PATH=<install>")
  endif()

  if(TARGET executorch::runtime)
    # ---- 2. the executorch wheel: shared libraries; extension/module and tensor are in the runtime --
    _edgevlm_require_targets("${executorch_DIR}"
      "install the executorch wheel the project pins (its CPU build ships all of them)"
      executorch::runtime executorch::threadpool executorch::backend_xnnpack executorch::kernels_optimized
      executorch::kernels_quantized)
    target_link_libraries(executorch_prebuilt INTERFACE executorch::runtime executorch::threadpool)
    foreach(target executorch::backend_xnnpack executorch::kernels_optimized executorch::kernels_quantized)
      _edgevlm_link_registering(${target})
    endforeach()
    set(EDGEVLM_EXECUTORCH_SOURCE_KIND "executorch wheel package")
  elseif(TARGET executorch)
    # ---- 1. a source build's install: static archives by default ------------------------------------
    _edgevlm_require_targets("${executorch_DIR}"
      "configure ExecuTorch with the android-arm64-v8a, ios or macos preset (they turn on EXECUTORCH_BUILD_XNNPACK, \
EXECUTORCH_BUILD_EXTENSION_MODULE, _EXTENSION_TENSOR, _KERNELS_OPTIMIZED and _KERNELS_QUANTIZED) and install it again"
      executorch executorch_core extension_module_static extension_tensor extension_threadpool xnnpack_backend
      optimized_native_cpu_ops_lib quantized_ops_lib)
    foreach(target executorch xnnpack_backend optimized_native_cpu_ops_lib quantized_ops_lib)
      _edgevlm_link_registering(${target})
    endforeach()
    # what those pull in, named too: older exports left some of these off their interfaces
    foreach(target executorch_core extension_module_static extension_data_loader extension_flat_tensor
                   extension_named_data_map extension_tensor extension_threadpool optimized_kernels portable_kernels
                   cpublas eigen_blas quantized_kernels XNNPACK xnnpack-microkernels-prod kleidiai pthreadpool
                   cpuinfo)
      if(TARGET ${target})
        target_link_libraries(executorch_prebuilt INTERFACE ${target})
      endif()
    endforeach()
    target_include_directories(executorch_prebuilt INTERFACE ${EXECUTORCH_INCLUDE_DIRS})
    if(ANDROID)
      target_link_libraries(executorch_prebuilt INTERFACE log)  # cpuinfo and ExecuTorch's Android PAL log there
    elseif(APPLE)
      # what ExecuTorch's Package.swift links for these components (the optimized kernels' BLAS)
      target_link_libraries(executorch_prebuilt INTERFACE "-framework Accelerate" "-framework Foundation")
    endif()
    set(EDGEVLM_EXECUTORCH_SOURCE_KIND "ExecuTorch install")
  elseif(EXECUTORCH_LIBRARIES AND CMAKE_VERSION VERSION_LESS 3.28)
    message(FATAL_ERROR "the executorch wheel's package at ${executorch_DIR} defines its targets only under CMake "
                        ">= 3.28, this is ${CMAKE_VERSION}: pip install 'cmake>=3.28', or build with "
                        "-DEXECUTORCH_ROOT=<wheel folder> instead of the package")
  else()
    message(FATAL_ERROR "${executorch_DIR}/executorch-config.cmake defined neither executorch (a source build's "
                        "install) nor executorch::runtime (the wheel's package): point executorch_DIR at an "
                        "ExecuTorch install made with `cmake --install`")
  endif()
endif()
message(STATUS "edgevlm: ExecuTorch from the ${EDGEVLM_EXECUTORCH_SOURCE_KIND}")
