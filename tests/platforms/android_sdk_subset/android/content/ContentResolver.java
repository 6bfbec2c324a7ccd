// Declarations only (bodies throw): the subset of the Android SDK (API 35) that android_demo calls,
// signatures as developer.android.com/reference documents them, so kotlinc rejects a misspelt call.
package android.content;
import android.net.Uri;
import java.io.FileNotFoundException;
import java.io.InputStream;
public abstract class ContentResolver {
    public final InputStream openInputStream(Uri uri) throws FileNotFoundException { throw new RuntimeException("Stub!"); }
}
