// Declarations only (bodies throw): the subset of the Android SDK (API 35) that android_demo calls,
// signatures as developer.android.com/reference documents them, so kotlinc rejects a misspelt call.
package android.content;
import android.content.res.AssetManager;
import java.io.File;
public class ContextWrapper extends Context {
    public ContextWrapper(Context base) { throw new RuntimeException("Stub!"); }
    public AssetManager getAssets() { throw new RuntimeException("Stub!"); }
    public ContentResolver getContentResolver() { throw new RuntimeException("Stub!"); }
    public File getFilesDir() { throw new RuntimeException("Stub!"); }
}
