// The demo's one screen: pick a photo, ask, watch the answer stream, read the stats. A single worker
// thread does all model work (EdgeVLM is one native pipeline); results come back via runOnUiThread.
// With `--es mode bench` it runs BenchMode instead and writes the JSON for the adb harness.
package ai.edgevlm.demo

import ai.edgevlm.EdgeVLM
import ai.edgevlm.RunOptions
import ai.edgevlm.TextCallback
import android.app.Activity
import android.content.Intent
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.os.Build
import android.os.Bundle
import android.util.Log
import android.widget.Button
import android.widget.EditText
import android.widget.ImageView
import android.widget.LinearLayout
import android.widget.ScrollView
import android.widget.TextView
import java.io.File
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

class MainActivity : Activity() {
    private val worker: ExecutorService = Executors.newSingleThreadExecutor()
    private var model: Opened<EdgeVLM>? = null  // touched on the worker thread only
    private var photo: Bitmap? = null

    private lateinit var pick: Button
    private lateinit var image: ImageView
    private lateinit var question: EditText
    private lateinit var ask: Button
    private lateinit var vision: TextView
    private lateinit var answer: TextView
    private lateinit var stats: TextView

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        buildUi()
        val bench = intent.getStringExtra("mode") == "bench"
        val options = if (bench) BenchOptions.from { intent.getStringExtra(it) } else null
        worker.execute { load(options) }
    }

    override fun onDestroy() {
        worker.execute { model?.model?.close(); model = null }
        worker.shutdown()
        super.onDestroy()
    }

    // ACTION_GET_CONTENT answers here (plain Activity: AndroidX's result API would be a dependency for one call)
    override fun onActivityResult(requestCode: Int, resultCode: Int, data: Intent?) {
        super.onActivityResult(requestCode, resultCode, data)
        val uri = data?.data
        if (requestCode != PICK_PHOTO || resultCode != RESULT_OK || uri == null) return
        val bitmap = contentResolver.openInputStream(uri)?.use { BitmapFactory.decodeStream(it) }
        if (bitmap == null) {
            answer.text = "could not decode that file as an image"
            return
        }
        photo = bitmap
        image.setImageBitmap(bitmap)
    }

    private fun buildUi() {
        pick = Button(this).apply { text = "Pick a photo" }
        image = ImageView(this).apply { adjustViewBounds = true; maxHeight = 900 }
        question = EditText(this).apply { setText("What is in this picture?") }
        ask = Button(this).apply { text = "Ask"; isEnabled = false }
        vision = TextView(this).apply { text = "vision: loading the model…" }
        answer = TextView(this)
        stats = TextView(this)
        val column = LinearLayout(this).apply { orientation = LinearLayout.VERTICAL; setPadding(32, 32, 32, 32) }
        listOf(pick, image, question, ask, vision, answer, stats).forEach { column.addView(it) }
        setContentView(ScrollView(this).apply { addView(column) })

        pick.setOnClickListener {
            val intent = Intent(Intent.ACTION_GET_CONTENT).setType("image/*").addCategory(Intent.CATEGORY_OPENABLE)
            startActivityForResult(intent, PICK_PHOTO)
        }
        ask.setOnClickListener {
            val bitmap = photo
            if (bitmap == null) {
                answer.text = "pick a photo first"
                return@setOnClickListener
            }
            val prompt = question.text.toString()
            ask.isEnabled = false
            answer.text = ""
            stats.text = ""
            worker.execute { answer(bitmap, prompt) }
        }
    }

    private fun load(bench: BenchOptions?) {
        try {
            val dir = AssetInstaller.install(assets, File(filesDir, AssetInstaller.ASSET_DIR))
            val manifest = ModelManifest(dir)
            val start = System.nanoTime()
            val opened = openWithFallback(manifest.visionChoices) { EdgeVLM.open(dir.path, it.vision) }
            val loadMs = (System.nanoTime() - start) / 1e6
            model = opened
            runOnUiThread { vision.text = opened.indicator; ask.isEnabled = true }
            if (bench != null) bench(manifest, opened, loadMs, bench)
        } catch (e: Exception) {
            Log.e(TAG, "edgevlm failed", e)
            if (bench != null) BenchMode.writeAtomically(File(filesDir, BenchMode.ERROR_FILE), "${e.message}\n")
            runOnUiThread { answer.text = "edgevlm failed: ${e.message}" }
        }
    }

    private fun bench(manifest: ModelManifest, opened: Opened<EdgeVLM>, loadMs: Double, options: BenchOptions) {
        File(filesDir, BenchMode.RESULT_FILE).delete()
        File(filesDir, BenchMode.ERROR_FILE).delete()
        runOnUiThread { answer.text = "bench: ${options.warmup} warm-up + ${options.runs} timed runs…" }
        val pixels = BenchMode.syntheticImage()
        val size = BenchMode.IMAGE_SIZE
        val device = BenchDevice(Build.MODEL, if (Build.VERSION.SDK_INT >= 31) Build.SOC_MODEL else null,
                                 "Android ${Build.VERSION.RELEASE} (API ${Build.VERSION.SDK_INT})")
        val document = BenchMode.run(manifest, opened, loadMs, options, device) {
            opened.model.run(pixels, size, size, options.prompt, RunOptions(maxNewTokens = options.maxNewTokens))
        }
        val out = File(filesDir, BenchMode.RESULT_FILE)
        BenchMode.writeAtomically(out, Json.write(document))
        Log.i(TAG, "bench written to $out")
        runOnUiThread { answer.text = "bench written to $out" }
    }

    private fun answer(bitmap: Bitmap, prompt: String) {
        try {
            val scaled = fitWithin(bitmap, MAX_SIDE)
            val width = scaled.width
            val height = scaled.height
            val pixels = IntArray(width * height)
            scaled.getPixels(pixels, 0, width, 0, 0, width, height)
            val opened = model ?: throw IllegalStateException("the model did not load (see the message above)")
            val result = opened.model.run(pixels, width, height, prompt, RunOptions(maxNewTokens = 128),
                                          TextCallback { text -> runOnUiThread { answer.append(text) } })
            val line = StatsFormatter.line(RunStats.parse(result))
            runOnUiThread { stats.text = line }
        } catch (e: Exception) {
            Log.e(TAG, "run failed", e)
            runOnUiThread { answer.append("\n[failed: ${e.message}]") }
        } finally {
            runOnUiThread { ask.isEnabled = true }
        }
    }

    /** A 12 MP photo as ARGB ints is 48 MB; the encoder slices at 448 px anyway, so cap the long side. */
    private fun fitWithin(bitmap: Bitmap, side: Int): Bitmap {
        val long = maxOf(bitmap.width, bitmap.height)
        if (long <= side) return bitmap
        return Bitmap.createScaledBitmap(bitmap, bitmap.width * side / long, bitmap.height * side / long, true)
    }

    companion object {
        private const val TAG = "edgevlm-demo"
        private const val PICK_PHOTO = 1
        private const val MAX_SIDE = 1344  // 3 x 448: MiniCPM-V's slicing covers this with its 9-slice maximum
    }
}
