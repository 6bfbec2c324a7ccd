// Declarations only (bodies throw): the subset of the Android SDK (API 35) that android_demo calls,
// signatures as developer.android.com/reference documents them, so kotlinc rejects a misspelt call.
package android.content;
import android.content.res.AssetManager;
import java.io.File;
public abstract class Context {
    public abstract AssetManager getAssets();
    public abstract ContentResolver getContentResolver();
    public abstract File getFilesDir();
}
