// The model files ship as APK assets (`edgevlm bundle` puts them in app/src/main/assets/edgevlm/), but
// the native runtime opens files by path: copy them to the app's files folder once per manifest.
package ai.edgevlm.demo

import android.content.res.AssetManager
import java.io.File

object AssetInstaller {
    const val ASSET_DIR = "edgevlm"

    /** Copies assets/edgevlm/ to [target] unless the same manifest.json is already there; returns [target]. */
    fun install(assets: AssetManager, target: File): File {
        val shipped = assets.open("$ASSET_DIR/manifest.json").use { it.readBytes() }
        val installed = File(target, "manifest.json")
        if (installed.isFile && installed.readBytes().contentEquals(shipped)) return target
        target.deleteRecursively()
        copy(assets, ASSET_DIR, target)
        return target  // manifest.json is copied last (see copy), so a half copy is redone next start
    }

    private fun copy(assets: AssetManager, path: String, into: File) {
        val children = assets.list(path) ?: emptyArray()
        if (children.isEmpty()) {  // a file: AssetManager lists no children for it
            into.parentFile?.mkdirs()
            assets.open(path).use { input -> into.outputStream().use { input.copyTo(it, 1 shl 20) } }
            return
        }
        into.mkdirs()
        for (name in children.sortedBy { it == "manifest.json" }) copy(assets, "$path/$name", File(into, name))
    }
}
