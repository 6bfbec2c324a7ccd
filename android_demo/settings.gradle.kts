// android_demo: one app module. The model and the native runtime come from
// `edgevlm bundle EXPORT --platform android --out android_demo` (README.md).
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}
rootProject.name = "edgevlm-android-demo"
include(":app")
