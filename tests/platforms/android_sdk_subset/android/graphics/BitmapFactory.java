// Declarations only (bodies throw): the subset of the Android SDK (API 35) that android_demo calls,
// signatures as developer.android.com/reference documents them, so kotlinc rejects a misspelt call.
package android.graphics;
import java.io.InputStream;
public class BitmapFactory {
    public static Bitmap decodeStream(InputStream is) { throw new RuntimeException("Stub!"); }
    public static Bitmap decodeFile(String pathName) { throw new RuntimeException("Stub!"); }
}
